"""Emotion recognition: free-text answers mapped to labels, WA/UA and a confusion matrix.

Protocol (IEMOCAP, 4 classes, session 5 held out as in SUPERB ER fold 5 and SALMONN):
"excited" is merged into "happy"; weighted accuracy (WA) is overall accuracy, unweighted
accuracy (UA) is the mean of per-class recalls. A speech LLM answers in free text, so the
first label word found in the answer (synonyms included) is the prediction; an answer with
no label word is counted wrong and listed, never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any

import pandas as pd

# IEMOCAP 4-class label set with answer synonyms (the label itself always matches).
# Raw IEMOCAP codes (neu, hap, exc, sad, ang) map here too, so EmoEvaluation labels work.
IEMOCAP4: dict[str, tuple[str, ...]] = {
    "neutral": ("neu", "neutral", "neutrality", "calm", "calmness", "normal", "indifferent"),
    "happy": (
        "hap",
        "happy",
        "happiness",
        "joy",
        "joyful",
        "glad",
        "exc",
        "excited",
        "excitement",
        "cheerful",
        "delighted",
        "pleased",
    ),
    "sad": ("sad", "sadness", "unhappy", "sorrow", "sorrowful", "depressed"),
    "angry": ("ang", "angry", "anger", "mad", "furious", "annoyed", "irritated"),
}
UNMAPPED = "<unmapped>"


class LabelMapper:
    """Maps free text to a label: the earliest synonym in the text wins (whole words only)."""

    def __init__(self, labels: Mapping[str, Sequence[str]] | Sequence[str] = IEMOCAP4):
        if not isinstance(labels, Mapping):  # a plain label list keeps the known synonyms
            labels = {lab: IEMOCAP4.get(lab, (lab,)) for lab in labels}
        self.labels = list(labels)
        pairs = [(syn.lower(), lab) for lab, syns in labels.items() for syn in (lab, *syns)]
        self._label_of = dict(pairs)
        # Longer synonyms first so "unhappy" is not read as "happy".
        alts = sorted({re.escape(s) for s, _ in pairs}, key=len, reverse=True)
        self._pattern = re.compile(r"(?<![\w-])(" + "|".join(alts) + r")(?![\w-])")

    def __call__(self, text: str | None) -> str | None:
        m = self._pattern.search((text or "").lower())
        return self._label_of[m.group(1)] if m else None


@cache
def _iemocap_mapper() -> LabelMapper:
    return LabelMapper(IEMOCAP4)


def emotion_label(text: str | None) -> str | None:
    """The IEMOCAP 4-class label a free-text answer names (synonyms included), or None."""
    return _iemocap_mapper()(text)


def classification_metrics(
    references: Sequence[str],
    answers: Sequence[str],
    ids: Sequence[str] | None = None,
    labels: Mapping[str, Sequence[str]] | Sequence[str] = IEMOCAP4,
) -> dict[str, Any]:
    """WA and UA (percent), per-class recall, confusion matrix and unmapped answers."""
    mapper = LabelMapper(labels)
    ids = list(ids) if ids is not None else [str(i) for i in range(len(references))]
    ref_labels = [mapper(r) or (r or "").strip().lower() for r in references]
    unknown_refs = sorted({r for r in ref_labels if r not in mapper.labels})
    preds = [mapper(a) for a in answers]
    unmapped = [
        {"id": i, "answer": a} for i, a, p in zip(ids, answers, preds, strict=True) if p is None
    ]
    n = len(references)
    correct = [p == r for p, r in zip(preds, ref_labels, strict=True)]
    classes = [c for c in mapper.labels + unknown_refs if c in ref_labels]
    recalls = {}
    for c in classes:
        idx = [k for k, r in enumerate(ref_labels) if r == c]
        recalls[c] = 100.0 * sum(correct[k] for k in idx) / len(idx)
    confusion = pd.crosstab(
        pd.Categorical(ref_labels, categories=classes, ordered=True),
        pd.Categorical(
            [p or UNMAPPED for p in preds], categories=[*mapper.labels, UNMAPPED], ordered=True
        ),
        rownames=["reference"],
        colnames=["predicted"],
        dropna=False,
    )
    return {
        "weighted_accuracy": 100.0 * sum(correct) / n if n else None,
        "unweighted_accuracy": sum(recalls.values()) / len(recalls) if recalls else None,
        "per_class_recall": recalls,
        "class_counts": {c: ref_labels.count(c) for c in classes},
        "confusion": {
            str(r): {str(c): int(v) for c, v in row.items()} for r, row in confusion.iterrows()
        },
        "unmapped_answers": unmapped,
        "unknown_reference_labels": unknown_refs,
        "labels": mapper.labels,
    }
