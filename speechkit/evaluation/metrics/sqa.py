"""Spoken question answering: multiple-choice accuracy and SQuAD-style EM / token F1.

Multiple choice: the answer letter is read from "B", "(B)", "B.", "B) text", "The answer is
B", "Answer: (B)" or "option B"; failing that, the one option whose text appears in the
answer. An answer that names no option (or several) is counted wrong and listed.
Open answers: exact match and token F1 after SQuAD v1.1 normalization (lowercase, drop
punctuation and the articles a/an/the), maximum over the references.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence
from typing import Any

LETTERS = string.ascii_uppercase
# Recorded in every SQA score summary (details.parse_rule): how an answer became a choice.
PARSE_RULE = (
    "sqa-parse-v1: the first of these that finds exactly one valid option letter (capital, "
    "case-sensitive): the whole answer is a letter ('B', '(B)', 'B.'); 'answer is B' / "
    "'answer: (B)' / 'answer is option B'; 'option B' / 'choice B'; the answer opens with "
    "'B.', 'B)' or '(B)'; '(B)' anywhere. Else the one option whose full text (SQuAD-"
    "normalized) appears in the answer. Anything else (no option, several) is unparsed: "
    "counted wrong and listed, never a random or default choice."
)
_PUNCT = frozenset(string.punctuation)

# Option letters are matched case-sensitively (so the article "a" is never option A);
# the cue words around them are not.
_PATTERNS = tuple(
    re.compile(p)
    for p in (
        r"^\s*\(?([A-Z])\)?\s*[.:)]?\s*$",  # the whole answer is a letter: "B", "(B)", "B."
        r"(?i:\banswer\s*(?:is|:)?\s*(?:option\s*)?)[:\s]*\(?([A-Z])\)?(?![\w'])",  # "answer is B"
        r"(?i:\b(?:option|choice)\s*)\(?([A-Z])\)?(?![\w'])",  # "option B"
        r"^\s*\(?([A-Z])[).:]\s",  # "B. text", "(B) text", "B) text"
        r"\(([A-Z])\)",  # "(B)" anywhere
    )
)


def _squad_normalize(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCT)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def extract_choice(answer: str, choices: Sequence[str] | None = None) -> str | None:
    """The option letter an answer names, or None when it names none or is ambiguous."""
    valid = LETTERS[: len(choices)] if choices else LETTERS
    text = answer or ""
    for pattern in _PATTERNS:
        found = {m for m in pattern.findall(text) if m in valid}
        if len(found) == 1:
            return found.pop()
    if choices:
        norm = _squad_normalize(text)
        hits = [
            LETTERS[i]
            for i, c in enumerate(choices)
            if _squad_normalize(c)
            and re.search(r"(?<!\w)" + re.escape(_squad_normalize(c)) + r"(?!\w)", norm)
        ]
        if len(hits) == 1:
            return hits[0]
    return None


def reference_letter(reference: str, choices: Sequence[str] | None = None) -> str | None:
    """The reference as an option letter: a letter, "(B)", or the text of one option."""
    ref = (reference or "").strip()
    m = re.fullmatch(r"\(?([A-Za-z])\)?\.?", ref)
    if m and (not choices or m.group(1).upper() in LETTERS[: len(choices)]):
        return m.group(1).upper()
    if choices:
        for i, c in enumerate(choices):
            if _squad_normalize(c) == _squad_normalize(ref):
                return LETTERS[i]
    return None


def exact_match(prediction: str, references: Sequence[str]) -> bool:
    """SQuAD exact match against any reference."""
    p = _squad_normalize(prediction)
    return any(p == _squad_normalize(r) for r in references)


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """SQuAD token F1 (0-1), maximum over the references."""
    best = 0.0
    p_tokens = _squad_normalize(prediction).split()
    for ref in references:
        r_tokens = _squad_normalize(ref).split()
        if not p_tokens or not r_tokens:
            best = max(best, float(p_tokens == r_tokens))
            continue
        common = sum((Counter(p_tokens) & Counter(r_tokens)).values())
        if common:
            precision, recall = common / len(p_tokens), common / len(r_tokens)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def sqa_metrics(
    answers: Sequence[str],
    references: Sequence[str | Sequence[str]],
    choices: Sequence[Sequence[str] | None] | None = None,
    ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """MC accuracy over multiple-choice items; EM and F1 (percent) over open items."""
    n = len(answers)
    ids = list(ids) if ids is not None else [str(i) for i in range(n)]
    choices = list(choices) if choices is not None else [None] * n
    mc_correct, mc_total, em, f1, open_total = 0, 0, 0.0, 0.0, 0
    unparsed: list[dict[str, Any]] = []
    for i in range(n):
        refs = [references[i]] if isinstance(references[i], str) else list(references[i])
        opts = choices[i]
        ref_letter = reference_letter(refs[0], opts) if len(refs) == 1 else None
        if ref_letter is not None:
            mc_total += 1
            got = extract_choice(answers[i], opts)
            if got is None:
                unparsed.append({"id": ids[i], "answer": answers[i]})
            mc_correct += got == ref_letter
        else:
            open_total += 1
            em += exact_match(answers[i], refs)
            f1 += token_f1(answers[i], refs)
    return {
        "accuracy": 100.0 * mc_correct / mc_total if mc_total else None,
        "multiple_choice_items": mc_total,
        "exact_match": 100.0 * em / open_total if open_total else None,
        "f1": 100.0 * f1 / open_total if open_total else None,
        "open_items": open_total,
        "unparsed_answers": unparsed,
        "parse_rule": PARSE_RULE if mc_total else None,
    }
