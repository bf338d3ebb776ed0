"""Hallucination: words written where nobody spoke, and repetition loops.

Measured on any transcription run, from the references and the result lines' times:

- false_transcription_rate (percent): of the clips with no speech (reference empty after the
  normalizer), the share given any words at all.
- inserted_words_per_min: the words written on those clips per minute of their audio.
- repetition_loop_rate (percent): of the clips with speech, the share whose hypothesis loops
  (see `is_loop`).
- pause_insertions: words written inside a known pause of a speech clip (items carrying
  `pauses`), and pause_insertions_per_min per minute of those pauses. With word times
  (--word-timestamps) each word lying inside a pause counts; without them only whole segments
  lying inside one do (a segment that spans speech and pause is not counted): a lower bound,
  as fine as the model's own timestamps.

Words are counted after the suite's normalizer: the Whisper English normalizer drops
bracketed tags such as "[Music]" or "(upbeat music)", so an annotation is not a word.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from typing import Any

HALLUCINATION_METRICS = ("false_transcription_rate", "inserted_words_per_min",
                         "repetition_loop_rate", "pause_insertions", "pause_insertions_per_min")
# Whisper's own loop test (openai-whisper transcribe.py): gzip ratio of the text above 2.4.
COMPRESSION_RATIO_THRESHOLD = 2.4
# (shortest group, longest group, times in a row): the same group of words repeated back to
# back this often is a loop. Short groups need more repeats ("no no no" is speech); a group
# of eight words or more said twice in a row verbatim is already one.
LOOP_RULES = ((1, 4, 4), (5, 7, 3), (8, 16, 2))


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression: high for repeated text."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def is_loop(words: Sequence[str], text: str = "") -> bool:
    """True when a group of words repeats back to back as often as LOOP_RULES says, or the
    text compresses better than Whisper's threshold."""
    if text and compression_ratio(text) > COMPRESSION_RATIO_THRESHOLD:
        return True
    for shortest, longest, repeats in LOOP_RULES:
        for n in range(shortest, longest + 1):
            if _repeats(words, n) >= repeats:
                return True
    return False


def _repeats(words: Sequence[str], n: int) -> int:
    """The most times any group of `n` words follows itself back to back."""
    best = 1
    for offset in range(n):
        run = 1
        for i in range(offset + n, len(words) - n + 1, n):
            run = run + 1 if words[i:i + n] == words[i - n:i] else 1
            best = max(best, run)
    return best


PAUSE_TOLERANCE_S = 0.1  # a segment may reach this far past a pause and still lie inside it


def _inside(start: float, end: float, pauses: Sequence[Sequence[float]]) -> bool:
    return any(a - PAUSE_TOLERANCE_S <= start and end <= b + PAUSE_TOLERANCE_S for a, b in pauses)


def _pause_words(segments: Sequence[dict[str, Any]], pauses: Sequence[Sequence[float]],
                 normalize: Callable[[str], str]) -> int:
    """Words written inside the pauses: timed words wholly inside one when the segment has
    them (--word-timestamps), else every word of a segment wholly inside one."""
    n = 0
    for s in segments:
        words = [w for w in s.get("words") or [] if isinstance(w, dict)]
        if words:
            n += sum(len(normalize(str(w.get("word", ""))).split()) for w in words
                     if _inside(w.get("start", -1.0), w.get("end", -1.0), pauses))
        elif _inside(s["start"], s["end"], pauses):
            n += len(normalize(s["text"]).split())
    return n


def hallucination_metrics(items: Sequence[Any], normalize: Callable[[str], str],
                          nonspeech: bool = True) -> dict[str, Any]:
    """The module's metrics over Scoreable records (text, reference, duration_s, segments,
    pauses); a metric with nothing to measure it on is absent.

    `nonspeech`: an empty reference means a clip without speech (a non-speech suite); when
    False such clips are left to the WER scorer, which calls a run of them incomplete."""
    quiet, quiet_s, quiet_words, given_words = [], 0.0, 0, 0
    speech, loops, pause_words, pause_s = 0, [], 0, 0.0
    for it in items:
        words = normalize(it.text or "").split()
        if not normalize(str(it.reference or "")).split():
            quiet_s += float(getattr(it, "duration_s", None) or 0.0)
            given_words += len(words)
            quiet_words += bool(words)
            if words:
                quiet.append({"id": it.id, "text": it.text})
            continue
        speech += 1
        if is_loop(words, it.text or ""):
            loops.append(it.id)
        pauses = getattr(it, "pauses", None) or []
        if pauses:
            pause_s += sum(b - a for a, b in pauses)
            pause_words += _pause_words(getattr(it, "segments", None) or [], pauses, normalize)
    n_quiet = sum(1 for it in items if not normalize(str(it.reference or "")).split())
    out: dict[str, Any] = {"speech_items": speech}
    if n_quiet and nonspeech:
        out["nonspeech_items"], out["nonspeech_minutes"] = n_quiet, round(quiet_s / 60, 4)
        out["false_transcription_rate"] = 100.0 * quiet_words / n_quiet
        out["transcribed_nonspeech"] = quiet
        if quiet_s > 0:
            out["inserted_words_per_min"] = given_words / (quiet_s / 60)
    if speech:
        out["repetition_loop_rate"] = 100.0 * len(loops) / speech
        out["repetition_loops"] = loops
    if pause_s > 0:
        out["pause_insertions"] = float(pause_words)
        out["pause_insertions_per_min"] = pause_words / (pause_s / 60)
    return out
