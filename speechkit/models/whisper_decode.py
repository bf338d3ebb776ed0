"""Whisper's decoding rules, shared by both engines (torch: whisper_torch.py; CTranslate2:
whisper_ctranslate2.py), with no torch: the fallback schedule and thresholds, the special
tokens, one window's decoding record, and where a window's segments and resume point lie.

The rules are those of openai-whisper (and faster-whisper): timestamp tokens in pairs and
never decreasing, the first timestamp within 1 s, temperature fallback when the text is a
repetition loop (gzip ratio) or unlikely (mean log-probability), and a window whose
<|nospeech|> probability is high and whose text is unlikely counts as silence.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # openai-whisper / faster-whisper fallback schedule
COMPRESSION_RATIO_THRESHOLD = 2.4  # gzip ratio of the text above which it is a repetition loop
LOGPROB_THRESHOLD = -1.0  # mean token log-probability below which a window is decoded again
NO_SPEECH_THRESHOLD = 0.6  # P(<|nospeech|>) above which an unlikely window is silence
BEST_OF = 5  # candidates sampled at each fallback temperature (openai-whisper's default)
TIME_PRECISION = 0.02  # s per timestamp token
MAX_INITIAL_TIMESTAMP_INDEX = 50  # the first timestamp is at most 1.0 s (openai-whisper)
SAMPLING_SEED = 0  # fallback sampling is seeded per row: reruns give the same text
MAX_PREVIOUS_TOKENS = 223  # previous text kept in a prompt: n_text_ctx // 2 - 1 (openai-whisper)
PROMPT_RESET_TEMPERATURE = 0.5  # text decoded hotter than this prompts nothing (openai-whisper)
MISSED_SPEECH_S = 1.0  # s; a VAD piece's speech its segments jumped over is decoded from this long
MISSED_OVERLAP = 0.25  # a speech region overlapped by segments for at most this share counts as missed


@dataclass(frozen=True)
class WhisperTokens:
    """The special token ids decoding needs, read from the model's generation config."""

    eot: int
    sot: int
    no_timestamps: int
    timestamp_begin: int
    no_speech: int | None
    tasks: dict[str, int]
    languages: dict[str, int]  # "en" -> <|en|>
    suppress: tuple[int, ...]
    vocab_size: int
    sot_prev: int | None = None  # <|startofprev|>: previous text follows it in a prompt

    @classmethod
    def from_model(cls, generation_config: Any, tokenizer: Any, vocab_size: int) -> WhisperTokens:
        gc = generation_config
        no_speech = None
        for name in ("<|nospeech|>", "<|nocaptions|>"):
            tid = tokenizer.convert_tokens_to_ids(name)
            if tid is not None and tid != tokenizer.unk_token_id:
                no_speech = tid
                break
        langs = {k.strip("<|>"): v for k, v in (getattr(gc, "lang_to_id", None) or {}).items()}
        return cls(
            eot=gc.eos_token_id, sot=gc.decoder_start_token_id, no_timestamps=gc.no_timestamps_token_id,
            timestamp_begin=gc.no_timestamps_token_id + 1, no_speech=no_speech,
            tasks=dict(getattr(gc, "task_to_id", None) or {}), languages=langs,
            suppress=tuple(gc.suppress_tokens or ()),  # no begin list: the first token is a timestamp
            vocab_size=vocab_size, sot_prev=tokenizer.convert_tokens_to_ids("<|startofprev|>"))

    def prompt(self, language: str | None, task: str) -> list[int]:
        """<|startoftranscript|><|lang|><|task|> (English-only models: SOT alone)."""
        if not self.languages:
            return [self.sot]
        return [self.sot, self.languages[language or "en"], self.tasks[task]]

    def conditioned(self, previous: list[int], prompt: list[int]) -> list[int]:
        """`prompt` after <|startofprev|> and the last MAX_PREVIOUS_TOKENS of the previous
        text's tokens (openai-whisper's prompt); `prompt` alone when there is none."""
        if not previous or self.sot_prev is None:
            return prompt
        return [self.sot_prev, *previous[-MAX_PREVIOUS_TOKENS:], *prompt]

    def max_new(self, prompt: list[int], max_new_tokens: int, positions: int) -> int:
        """New tokens a window may decode: half the decoder's positions less the task tokens
        (<|startoftranscript|> onwards), so that previous text is taken from the other half."""
        task = len(prompt) - prompt.index(self.sot) if self.sot in prompt else len(prompt)
        return min(max_new_tokens, positions // 2 - task)


@dataclass
class Decoded:
    """One window's decoding: the sampled tokens (EOT excluded) and how sure the model was."""

    tokens: list[int]
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float
    temperature: float
    truncated: bool  # stopped at max_new_tokens without an end-of-text
    states: torch.Tensor | np.ndarray | None = None  # the window's encoder output, for word timing

    def needs_fallback(self) -> bool:
        if self.is_silence():
            return False
        return (self.compression_ratio > COMPRESSION_RATIO_THRESHOLD
                or self.avg_logprob < LOGPROB_THRESHOLD)

    def is_silence(self, threshold: float | None = None) -> bool:
        """Judged silence: P(<|nospeech|>) above `threshold` (None: NO_SPEECH_THRESHOLD; 1 never
        is) while the text is unlikely."""
        limit = NO_SPEECH_THRESHOLD if threshold is None else threshold
        return self.no_speech_prob > limit and self.avg_logprob < LOGPROB_THRESHOLD


def compression_ratio(text: str) -> float:
    """Bytes of the text over bytes of its zlib compression: high for repetition loops."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def resume_point(tokens: list[int], timestamp_begin: int) -> tuple[list[int], float | None]:
    """Where decoding of a window should go on, as openai-whisper seeks.

    A window whose text ends on a closing timestamp ("... text <|t|>") is complete. One that
    ends on a pair ("<|a|><|b|>"), or in text after a pair, stopped early: its tokens up to the
    first timestamp of the last pair are kept and decoding resumes at that time.
    Returns (tokens to keep, resume time in s or None).
    """
    is_ts = [t >= timestamp_begin for t in tokens]
    if len(tokens) >= 2 and is_ts[-1] and not is_ts[-2]:
        return tokens, None
    pairs = [i for i in range(1, len(tokens)) if is_ts[i] and is_ts[i - 1]]
    if not pairs:
        return tokens, None
    cut = pairs[-1]  # index of the pair's second timestamp
    return tokens[:cut], (tokens[cut - 1] - timestamp_begin) * TIME_PRECISION


def last_timestamp(tokens: list[int], timestamp_begin: int) -> float | None:
    """The time of a window's last timestamp token in s (where its text ends), or None."""
    stamps = [t for t in tokens if t >= timestamp_begin]
    return (stamps[-1] - timestamp_begin) * TIME_PRECISION if stamps else None


def split_segments(tokens: list[int], timestamp_begin: int, duration_s: float
                   ) -> list[tuple[float, float, list[int]]]:
    """(start s, end s, text tokens) for each timestamped segment of a decoded window."""
    segments: list[tuple[float, float, list[int]]] = []
    start: float | None = None
    text: list[int] = []
    for t in tokens:
        if t >= timestamp_begin:
            stamp = min((t - timestamp_begin) * TIME_PRECISION, duration_s)
            if start is None:
                start = stamp
            else:
                if text:
                    segments.append((start, max(stamp, start), text))
                start, text = None, []  # the next timestamp opens the next segment
        else:
            if start is None:
                start = segments[-1][1] if segments else 0.0
            text.append(t)
    if text:  # a last segment without its closing timestamp runs to the end of the window
        segments.append((start or 0.0, duration_s, text))
    return segments


def missed_speech(covered: list[tuple[float, float]], speech: list[tuple[float, float]],
                  min_s: float = MISSED_SPEECH_S) -> list[tuple[float, float]]:
    """Stretches of a VAD piece's speech regions (s) that its decoded segments (`covered`)
    jumped over, in time order: Whisper sometimes leaves out a sentence in mid-window (its
    next timestamp lies past it), which no resume point shows.

    A region counts as missed when segments overlap at most MISSED_OVERLAP of it (its VAD
    padding may reach under a neighbour); missed regions with no segment between them are
    joined; each stretch is trimmed to where the segments around it end and start, and kept
    when at least `min_s` long."""
    def overlap(s: float, e: float) -> float:
        return sum(max(0.0, min(e, ce) - max(s, cs)) for cs, ce in covered)

    joined: list[tuple[float, float]] = []
    for s, e in sorted(speech):
        if e <= s or overlap(s, e) > MISSED_OVERLAP * (e - s):
            continue
        if joined and overlap(joined[-1][1], s) == 0.0:
            joined[-1] = (joined[-1][0], max(e, joined[-1][1]))
        else:
            joined.append((s, e))
    out = []
    for s, e in joined:
        for cs, ce in covered:
            if cs <= s < ce:
                s = ce
            if cs < e <= ce:
                e = cs
        if e - s >= min_s:
            out.append((s, e))
    return out
