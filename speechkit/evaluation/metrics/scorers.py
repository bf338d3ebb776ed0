"""Task -> scorer: turns scoreable predictions into flat metrics plus details.

Each scorer takes `Scoreable` records (id, prediction text, reference and whatever the task
needs) and returns (metrics, details, per_item). `metrics` is flat {name: number} in the
units the tables and `speechkit compare` use: WER/CER/EER/accuracies in percent, BLEU and
chrF 0-100, minDCF and captioning metrics on their native scales. A metric that could not
be computed is absent from `metrics` and explained in `details`, never reported as 0.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from speechkit.evaluation.metrics.hallucination import HALLUCINATION_METRICS, hallucination_metrics
from speechkit.evaluation.metrics.normalizers import get_normalizer

Result = tuple[dict[str, float], dict[str, Any], list[dict[str, Any]]]


@dataclass
class Scoreable:
    """One prediction ready to score."""

    id: str
    text: str
    reference: Any = None  # str, or a list of str (captions, open answers, translations)
    score: float | None = None  # SV: P(yes) or a cosine score
    label: int | None = None  # SV: 1 target, 0 non-target
    choices: list[str] | None = None  # SQA multiple choice
    target_language: str | None = None  # ST
    duration_s: float | None = None  # the clip's length (hallucination rates per minute)
    segments: list[dict[str, Any]] | None = None  # timed hypothesis segments, as the line has them
    pauses: list[list[float]] | None = None  # (start, end) s where the clip has no speech
    extras: dict[str, Any] = field(default_factory=dict)


def _keep(d: dict[str, Any], names: Sequence[str]) -> dict[str, float]:
    """The named metrics that were computed; a NaN or infinite one is left out and named in
    `d["not_finite"]`, never reported as a number."""
    out = {}
    for n in names:
        if d.get(n) is None:
            continue
        value = float(d[n])
        if math.isfinite(value):
            out[n] = value
        else:
            d.setdefault("not_finite", {})[n] = str(value)
    return out


def score_wer(items: list[Scoreable], normalizer: str | None, nonspeech: bool = False,
              **_: Any) -> Result:
    """ASR/AVSR/VSR: corpus WER and CER after the named normalizer, and the hallucination
    metrics: repetition loops and words in pauses, and on a non-speech suite (`nonspeech`:
    an empty reference is a clip without speech) the clips given words."""
    from speechkit.evaluation.metrics.wer import error_rates

    r = error_rates(
        [str(i.reference) for i in items],
        [i.text for i in items],
        ids=[i.id for i in items],
        normalizer=get_normalizer(normalizer),
    )
    details = r.summary()
    details["mean_utterance_wer"] = r.mean_utterance_wer()
    details.update(hallucination_metrics(items, get_normalizer(normalizer), nonspeech))
    if r.wer is None and items:
        details["wer_not_computed"] = "every reference is empty after normalization"
    per = [
        {
            "id": u.id,
            "reference": u.reference,
            "hypothesis": u.hypothesis,
            "ref_words": u.ref_words,
            "substitutions": u.substitutions,
            "deletions": u.deletions,
            "insertions": u.insertions,
            "hits": u.hits,
        }
        for u in r.per_utterance
    ]
    return _keep(details, ["wer", "cer", *HALLUCINATION_METRICS]), details, per


def score_st(
    items: list[Scoreable], normalizer: str | None, target_language: str | None = None, **_: Any
) -> Result:
    """ST: sacreBLEU BLEU and chrF with the tokenizer for the target language; an item may
    have several reference translations."""
    from speechkit.evaluation.metrics.bleu import corpus_bleu_chrf

    norm = get_normalizer(normalizer)
    langs = {i.target_language for i in items if i.target_language}
    lang = target_language or (langs.pop() if len(langs) == 1 else None)
    refs = [
        [norm(r) for r in i.reference] if isinstance(i.reference, list) else norm(i.reference)
        for i in items
    ]
    d = corpus_bleu_chrf([norm(i.text) for i in items], refs, target_language=lang)
    d["target_language"] = lang
    if len({i.target_language for i in items if i.target_language}) > 1 and not target_language:
        d["warning"] = "several target languages in one file: tokenizer 13a was used for all"
    return _keep(d, ["bleu", "chrf"]), d, []


def score_sv(items: list[Scoreable], **_: Any) -> Result:
    """SV: EER/minDCF from scores (P(yes) or cosine), accuracy from yes/no answers."""
    from speechkit.evaluation.metrics.eer import sv_metrics

    scores = [i.score for i in items]
    have_text = any(i.text.strip() for i in items)
    d = sv_metrics(
        [int(i.label or 0) for i in items],
        scores=scores if any(s is not None for s in scores) else None,
        answers=[i.text for i in items] if have_text else None,
        ids=[i.id for i in items],
    )
    if all(s is None for s in scores):
        d["eer_not_computed"] = (
            "no continuous scores: EER/minDCF need `extras.p_yes` or a `score` field on each line"
        )
    return _keep(d, ["eer", "mindcf_0.01", "mindcf_0.05", "accuracy"]), d, []


def score_er(items: list[Scoreable], labels: Any = None, **_: Any) -> Result:
    """ER: weighted/unweighted accuracy over free-text answers mapped to labels."""
    from speechkit.evaluation.metrics.classification import IEMOCAP4, classification_metrics

    d = classification_metrics(
        [str(i.reference) for i in items],
        [i.text for i in items],
        ids=[i.id for i in items],
        labels=labels or IEMOCAP4,
    )
    return _keep(d, ["weighted_accuracy", "unweighted_accuracy"]), d, []


def score_sqa(items: list[Scoreable], **_: Any) -> Result:
    """SQA: multiple-choice accuracy, open-answer exact match and token F1."""
    from speechkit.evaluation.metrics.sqa import sqa_metrics

    d = sqa_metrics(
        [i.text for i in items],
        [i.reference for i in items],
        choices=[i.choices for i in items],
        ids=[i.id for i in items],
    )
    return _keep(d, ["accuracy", "exact_match", "f1"]), d, []


def score_aac(items: list[Scoreable], use_java: bool | None = None, **_: Any) -> Result:
    """AAC: coco-caption metrics against each clip's reference captions."""
    from speechkit.evaluation.metrics.captioning import caption_metrics

    refs = [[i.reference] if isinstance(i.reference, str) else list(i.reference) for i in items]
    d = caption_metrics([i.text for i in items], refs, use_java=use_java)
    return _keep(d, d.get("ran", [])), d, []


SCORERS: dict[str, Callable[..., Result]] = {
    "asr": score_wer,
    "avsr": score_wer,
    "vsr": score_wer,
    "st": score_st,
    "sv": score_sv,
    "er": score_er,
    "sqa": score_sqa,
    "aac": score_aac,
}
