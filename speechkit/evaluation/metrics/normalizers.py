"""Text normalizers applied to references and hypotheses before WER/CER.

Which normalizer was used changes a WER by whole points, so every score records its name:
- `whisper-en`: the Whisper English text normalizer (spelling map, numbers, contractions);
  LibriSpeech and most leaderboards (Open ASR Leaderboard, ESPnet/NeMo Whisper evals).
- `whisper-basic`: Whisper's language-independent normalizer (lowercase, drop brackets and
  symbols); for non-English ASR.
- `basic`: lowercase, strip punctuation, collapse spaces.
- `lrs3`: lowercase only, as auto_avsr and Llama-AVSR score LRS3.
- `none`: the text as it is.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from functools import cache

from speechkit.errors import SpeechkitError

Normalizer = Callable[[str], str]

NORMALIZERS = ("whisper-en", "whisper-basic", "basic", "lrs3", "none")

_SPACES = re.compile(r"\s+")


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text).strip()


def basic_normalize(text: str) -> str:
    """Lowercase, replace every Unicode punctuation character with a space, collapse spaces."""
    text = text.lower()
    text = "".join(" " if unicodedata.category(ch).startswith("P") else ch for ch in text)
    return _collapse(text)


def lrs3_normalize(text: str) -> str:
    """LRS3 protocol (auto_avsr, Llama-AVSR): lowercase only; punctuation is kept."""
    return _collapse(text.lower())


def identity(text: str) -> str:
    """No normalization (whitespace is still what splits words)."""
    return text


@cache
def _whisper_en() -> Normalizer:
    from whisper_normalizer.english import EnglishSpellingNormalizer, EnglishTextNormalizer

    if len(EnglishSpellingNormalizer().mapping) < 1000:  # the package ships ~1,700 entries
        raise SpeechkitError(
            "whisper-normalizer is installed without its English spelling map; "
            "reinstall it: pip install --force-reinstall whisper-normalizer"
        )
    normalizer = EnglishTextNormalizer()
    return lambda text: _collapse(normalizer(text))


@cache
def _whisper_basic() -> Normalizer:
    from whisper_normalizer.basic import BasicTextNormalizer

    normalizer = BasicTextNormalizer()
    return lambda text: _collapse(normalizer(text))


def get_normalizer(name: str | None) -> Normalizer:
    """The normalizer called `name` (None means `none`); unknown names list the choices."""
    key = (name or "none").strip().lower()
    if key == "whisper-en":
        return _whisper_en()
    if key == "whisper-basic":
        return _whisper_basic()
    if key == "basic":
        return basic_normalize
    if key == "lrs3":
        return lrs3_normalize
    if key == "none":
        return identity
    raise SpeechkitError(f"unknown normalizer {name!r}; choose one of: {', '.join(NORMALIZERS)}")
