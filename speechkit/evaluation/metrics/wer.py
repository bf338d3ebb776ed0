"""Corpus WER and CER with jiwer, keeping per-utterance edit counts for analysis.

Protocol: corpus-level rates, total edits / total reference units (Open ASR Leaderboard,
auto_avsr, Llama-AVSR), never the mean of per-utterance rates, which over-weights short
utterances. Rates are reported in percent.

Edge cases, handled here rather than left to jiwer's version-dependent behaviour:
- An empty reference (after normalization) adds 0 reference words and counts every
  hypothesis word as an insertion (as sclite does); it is counted in `empty_references`.
- When every reference is empty the rate is undefined: `wer`/`cer` are None, never 0 or inf.
- An empty hypothesis is all deletions (100% for that utterance).
CER counts spaces between words as characters, as jiwer and the Hugging Face evaluate CER do.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import jiwer

from speechkit.evaluation.metrics.normalizers import Normalizer, identity


@dataclass
class UtteranceEdits:
    """Word-level alignment counts for one utterance (after normalization)."""

    id: str
    reference: str
    hypothesis: str
    ref_words: int
    substitutions: int
    deletions: int
    insertions: int
    hits: int

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions


@dataclass
class ErrorRates:
    """Corpus WER/CER in percent plus the totals they come from."""

    wer: float | None
    cer: float | None
    ref_words: int
    ref_chars: int
    substitutions: int
    deletions: int
    insertions: int
    hits: int
    char_errors: int
    utterances: int
    empty_references: int
    per_utterance: list[UtteranceEdits] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Totals without the per-utterance list (for a JSON summary)."""
        d = asdict(self)
        d.pop("per_utterance")
        return d

    def mean_utterance_wer(self) -> float | None:
        """Mean of per-utterance WERs (percent), for comparison only; not the protocol."""
        rates = [u.errors / u.ref_words for u in self.per_utterance if u.ref_words]
        return 100.0 * sum(rates) / len(rates) if rates else None


def _word_edits(refs: list[str], hyps: list[str], ids: list[str]) -> list[UtteranceEdits]:
    """Per-utterance word alignment counts (jiwer); an empty reference makes every hypothesis
    word an insertion."""
    per: list[UtteranceEdits] = []
    nonempty = [i for i, r in enumerate(refs) if r]
    word_out = (
        jiwer.process_words([refs[i] for i in nonempty], [hyps[i] for i in nonempty])
        if nonempty
        else None
    )
    by_index: dict[int, UtteranceEdits] = {}
    if word_out is not None:
        for k, i in enumerate(nonempty):
            counts = {"equal": 0, "substitute": 0, "delete": 0, "insert": 0}
            for chunk in word_out.alignments[k]:
                ref_n = chunk.ref_end_idx - chunk.ref_start_idx
                hyp_n = chunk.hyp_end_idx - chunk.hyp_start_idx
                counts[chunk.type] += hyp_n if chunk.type == "insert" else ref_n
            by_index[i] = UtteranceEdits(
                ids[i],
                refs[i],
                hyps[i],
                len(refs[i].split()),
                counts["substitute"],
                counts["delete"],
                counts["insert"],
                counts["equal"],
            )
    for i, (r, h) in enumerate(zip(refs, hyps, strict=True)):
        if i in by_index:
            per.append(by_index[i])
        else:  # empty reference: every hypothesis word is an insertion
            per.append(UtteranceEdits(ids[i], r, h, 0, 0, 0, len(h.split()), 0))
    return per


def error_rates(
    references: Sequence[str],
    hypotheses: Sequence[str],
    ids: Sequence[str] | None = None,
    normalizer: Normalizer | None = None,
) -> ErrorRates:
    """Corpus WER and CER of `hypotheses` against `references`, both normalized first."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    norm = normalizer or identity
    ids = list(ids) if ids is not None else [str(i) for i in range(len(references))]
    refs = [" ".join(norm(r).split()) for r in references]
    hyps = [" ".join(norm(h).split()) for h in hypotheses]

    per = _word_edits(refs, hyps, ids)
    nonempty = [i for i, r in enumerate(refs) if r]

    ref_words = sum(u.ref_words for u in per)
    subs = sum(u.substitutions for u in per)
    dels = sum(u.deletions for u in per)
    ins = sum(u.insertions for u in per)
    hits = sum(u.hits for u in per)

    # Characters: empty references contribute every hypothesis character as insertions.
    ref_chars = sum(len(r) for r in refs)
    char_errors = sum(len(hyps[i]) for i, r in enumerate(refs) if not r)
    if nonempty:
        c = jiwer.process_characters([refs[i] for i in nonempty], [hyps[i] for i in nonempty])
        char_errors += c.substitutions + c.deletions + c.insertions

    return ErrorRates(
        wer=100.0 * (subs + dels + ins) / ref_words if ref_words else None,
        cer=100.0 * char_errors / ref_chars if ref_chars else None,
        ref_words=ref_words,
        ref_chars=ref_chars,
        substitutions=subs,
        deletions=dels,
        insertions=ins,
        hits=hits,
        char_errors=char_errors,
        utterances=len(per),
        empty_references=len(refs) - len(nonempty),
        per_utterance=per,
    )
