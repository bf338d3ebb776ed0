"""Word timestamps for Whisper: dynamic time warping over the cross-attention of the model's
alignment heads, as openai-whisper does (`--word-timestamps`). The CTranslate2 engine aligns
in CTranslate2 and uses only the torch-free parts here (words, times from a path); torch is
imported by the torch engine's `align_words`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

    from speechkit.data import Segment

FRAMES_PER_SECOND = 50  # encoder output frames per second of audio (20 ms each)
MEDIAN_FILTER_WIDTH = 7  # frames; openai-whisper's smoothing of the attention weights
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})  # words are characters
# Punctuation that opens a word (openai-whisper's `prepend_punctuations`, less the space).
OPENING_PUNCTUATION = frozenset("\"'“¿([{-")


@dataclass(frozen=True)
class WordTokens:
    """A word's text tokens; `first:last` are the ones that sound. Punctuation before or after
    them is written with the word but not timed with it: its frames are often the pause."""

    text: str
    tokens: list[int]
    first: int = 0
    last: int | None = None  # None: to the end


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float  # s from the start of the window
    end: float
    tokens: int  # how many text tokens make the word
    probability: float | None = None  # mean probability of its sounding tokens


def _median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    """Median over a sliding window of the last dimension (reflect-padded)."""
    import torch.nn.functional as F

    pad = width // 2
    if x.shape[-1] <= pad:
        return x
    y = F.pad(x.reshape(1, -1, x.shape[-1]), (pad, pad), mode="reflect").reshape(*x.shape[:-1], -1)
    return y.unfold(-1, width, 1).median(-1).values


def _dtw(cost: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The monotonic path of least total cost from the top-left to the bottom-right cell."""
    n, m = cost.shape
    acc = np.full((n + 1, m + 1), np.inf)
    acc[0, 0] = 0.0
    step = np.zeros((n + 1, m + 1), dtype=np.int8)  # 0 diagonal, 1 from above, 2 from the left
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            c0, c1, c2 = acc[i - 1, j - 1], acc[i - 1, j], acc[i, j - 1]
            if c0 <= c1 and c0 <= c2:
                acc[i, j], step[i, j] = cost[i - 1, j - 1] + c0, 0
            elif c1 <= c2:
                acc[i, j], step[i, j] = cost[i - 1, j - 1] + c1, 1
            else:
                acc[i, j], step[i, j] = cost[i - 1, j - 1] + c2, 2
    i, j, path = n, m, []
    while i > 0 and j > 0:
        path.append((i - 1, j - 1))
        s = step[i, j]
        if s == 0:
            i, j = i - 1, j - 1
        elif s == 1:
            i -= 1
        else:
            j -= 1
    path.reverse()
    arr = np.array(path)
    return arr[:, 0], arr[:, 1]


def _sounds(piece: str) -> bool:
    return any(c.isalnum() for c in piece)


def split_words(tokenizer: Any, tokens: list[int], language: str) -> list[WordTokens]:
    """Text tokens grouped into words: a token that starts with a space opens a word, closing
    punctuation sticks to the word before it and opening punctuation (a quote, a bracket) to
    the word after it; in languages written without spaces each decodable piece is a word."""
    groups: list[list[int]] = []
    pieces: list[list[str]] = []
    opened = False  # the last group is opening punctuation waiting for its word
    for t in tokens:
        piece = tokenizer.decode([t])
        if language in NO_SPACE_LANGUAGES and "\ufffd" not in piece:
            new = True
        elif opened:
            new = False
        elif piece.startswith(" ") and not _sounds(piece):
            new = not groups or piece.strip() in OPENING_PUNCTUATION
        else:
            new = not groups or piece.startswith(" ")
        if new:
            groups.append([])
            pieces.append([])
        groups[-1].append(t)
        pieces[-1].append(piece)
        opened = not _sounds("".join(pieces[-1])) and piece.strip() in OPENING_PUNCTUATION
    words = []
    for ids, ps in zip(groups, pieces, strict=True):
        sounding = [i for i, p in enumerate(ps) if _sounds(p)]
        first, last = (sounding[0], sounding[-1] + 1) if sounding else (0, len(ids))
        words.append(WordTokens(tokenizer.decode(ids), ids, first, last))
    return words


def align_words(model: Any, tokenizer: Any, encoder_states: torch.Tensor, prompt: list[int],
                no_timestamps: int, eot: int, text_tokens: list[int], duration_s: float,
                language: str) -> list[TimedWord]:
    """Word start and end times of one window's text, from one decoder pass with attentions."""
    import torch

    words = split_words(tokenizer, text_tokens, language)
    if not words:
        return []
    n = len(prompt) + 1  # the text tokens follow the prompt and <|notimestamps|>
    heads = model.generation_config.alignment_heads
    ids = torch.tensor([[*prompt, no_timestamps, *text_tokens, eot]], device=encoder_states.device)
    config = model.model.config
    saved = config._attn_implementation
    config._attn_implementation = "eager"  # sdpa does not return attention weights
    try:
        with torch.inference_mode():
            out = model.model.decoder(input_ids=ids, encoder_hidden_states=encoder_states[None],
                                      output_attentions=True, use_cache=False)
            hidden = out.last_hidden_state[0, n - 1:n - 1 + len(text_tokens)]
            probs = model.proj_out(hidden).float().softmax(-1)[
                torch.arange(len(text_tokens)), ids[0, n:n + len(text_tokens)]]
    finally:
        config._attn_implementation = saved
    frames = max(1, min(encoder_states.shape[0], int(round(duration_s * FRAMES_PER_SECOND))))
    weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads]).float()
    weights = weights[:, :, :frames]
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-10)  # softmax over the audio only
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = _median_filter((weights - mean) / std.clamp_min(1e-10), MEDIAN_FILTER_WIDTH)
    # Row k holds the attention of the query that predicts text token k (openai-whisper:
    # the rows from <|notimestamps|> to the last text token, for the text and end-of-text).
    matrix = weights.mean(0)[n - 1:-1]
    text_idx, time_idx = _dtw(-matrix.double().cpu().numpy())
    return timed_words(words, text_idx, time_idx, probs.cpu().tolist())


def timed_words(words: list[WordTokens], text_idx: np.ndarray, time_idx: np.ndarray,
                token_probs: list[float] | None = None) -> list[TimedWord]:
    """Word times from a monotonic alignment path (text token index, encoder frame) that
    covers the words' tokens and the end-of-text: a word starts where its first sounding token
    does and ends where the token after its last sounding one starts (so a comma's frames,
    often a pause, are not the word's)."""
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / FRAMES_PER_SECOND
    top = len(jump_times) - 1
    out_words, at = [], 0
    for w in words:
        last = len(w.tokens) if w.last is None else w.last
        start = float(jump_times[min(at + w.first, top)])
        end = float(jump_times[min(at + last, top)])
        probs = token_probs[at + w.first:at + last] if token_probs else []
        out_words.append(TimedWord(w.text, round(start, 3), round(max(end, start), 3), len(w.tokens),
                                   round(float(np.mean(probs)), 4) if probs else None))
        at += len(w.tokens)
    return out_words


# Word times are fitted after alignment as openai-whisper and faster-whisper do: DTW gives a
# word the frames up to the next word, so a word before a pause or at a segment edge can be
# far too long. Durations are capped against the median word duration.
MAX_MEDIAN_WORD_S = 0.7  # s; the median used is at most this (openai-whisper's value)
SEGMENT_EDGE_SLACK_S = 0.5  # s; a first or last word reaching this far past its segment's
# timestamp is cut back to it (openai-whisper's value)
PAUSE_MEDIANS = 4  # a first word ending this many medians after the last speech follows a pause
SENTENCE_ENDS = tuple(".。!！?？")


def fit_word_times(segments: list[Segment]) -> list[Segment]:
    """Segments with their word times made consistent: every word ends at or after its start,
    words follow each other without overlap, lie inside their segment, and do not stretch
    over a pause. A segment's edges follow its first and last words unless those run more
    than SEGMENT_EDGE_SLACK_S past its timestamps; segments stay in order."""
    from speechkit.data import Segment, Word

    durations = [w.end - w.start for s in segments for w in s.words or () if w.end > w.start]
    median = min(MAX_MEDIAN_WORD_S, float(np.median(durations))) if durations else 0.0
    longest = 2 * median
    out: list[Segment] = []
    last_speech = prev_end = 0.0
    previous = ""  # the word before, across segments
    for seg in segments:
        if not seg.words:
            start = max(seg.start, prev_end)
            out.append(Segment(start, max(seg.end, start), seg.text, seg.words))
            prev_end = out[-1].end
            continue
        words = [Word(w.word, w.start, max(w.end, w.start), w.probability) for w in seg.words]
        for w in words:  # the frames after a sentence are the pause, not its words'
            if w.end - w.start > longest:
                if w.word.endswith(SENTENCE_ENDS):
                    w.end = w.start + longest
                elif previous.endswith(SENTENCE_ENDS):
                    w.start = w.end - longest
            previous = w.word
        first = words[0]
        if first.end - last_speech > PAUSE_MEDIANS * median and (
                first.end - first.start > longest
                or (len(words) > 1 and words[1].end - first.start > 2 * longest)):
            if len(words) > 1 and words[1].end - words[1].start > longest:  # so is the second
                first.end = words[1].start = max(first.start, words[1].end - longest)
            first.start = max(0.0, first.start, first.end - longest)
        start, end, last = seg.start, seg.end, words[-1]
        if start < first.end and start - SEGMENT_EDGE_SLACK_S > first.start:  # too early
            first.start = max(first.start, min(first.end - median, start))
            start = min(start, first.start)
        else:
            start = first.start
        if end > last.start and end + SEGMENT_EDGE_SLACK_S < last.end:  # too late
            last.end = max(last.start + median, end)
            end = max(end, last.end)
        else:
            end = last.end
        start = max(start, prev_end)
        end = max(end, start)
        at = start
        for w in words:  # in order, inside the segment, end >= start
            w.start = round(min(max(w.start, at), end), 3)
            w.end = round(min(max(w.end, w.start), end), 3)
            at = w.end
        out.append(Segment(round(start, 3), round(end, 3), seg.text, words))
        last_speech = prev_end = out[-1].end
    return out
