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

FRAMES_PER_SECOND = 50  # encoder output frames per second of audio (20 ms each)
MEDIAN_FILTER_WIDTH = 7  # frames; openai-whisper's smoothing of the attention weights
NO_SPACE_LANGUAGES = frozenset({"zh", "ja", "th", "lo", "my", "yue"})  # words are characters


@dataclass(frozen=True)
class TimedWord:
    word: str
    start: float  # s from the start of the window
    end: float
    tokens: int  # how many text tokens make the word


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


def split_words(tokenizer: Any, tokens: list[int], language: str) -> list[tuple[str, list[int]]]:
    """Text tokens grouped into words: a token that starts with a space opens a word, and
    punctuation sticks to the word before it; in languages written without spaces each
    decodable piece is a word."""
    words: list[tuple[str, list[int]]] = []
    for t in tokens:
        piece = tokenizer.decode([t])
        if language in NO_SPACE_LANGUAGES and "\ufffd" not in piece:
            words.append((piece, [t]))
        elif words and (not piece.startswith(" ") or not any(c.isalnum() for c in piece)):
            ids = [*words[-1][1], t]
            words[-1] = (tokenizer.decode(ids), ids)
        else:
            words.append((piece, [t]))
    return words


def align_words(model: Any, tokenizer: Any, encoder_states: torch.Tensor, prompt: list[int],
                no_timestamps: int, eot: int, text_tokens: list[int], duration_s: float,
                language: str) -> list[TimedWord]:
    """Word start and end times of one window's text, from one decoder pass with attentions."""
    import torch

    words = split_words(tokenizer, text_tokens, language)
    if not words:
        return []
    heads = model.generation_config.alignment_heads
    ids = torch.tensor([[*prompt, no_timestamps, *text_tokens, eot]], device=encoder_states.device)
    config = model.model.config
    saved = config._attn_implementation
    config._attn_implementation = "eager"  # sdpa does not return attention weights
    try:
        with torch.inference_mode():
            out = model.model.decoder(input_ids=ids, encoder_hidden_states=encoder_states[None],
                                      output_attentions=True, use_cache=False)
    finally:
        config._attn_implementation = saved
    frames = max(1, min(encoder_states.shape[0], int(round(duration_s * FRAMES_PER_SECOND))))
    weights = torch.stack([out.cross_attentions[layer][0, head] for layer, head in heads]).float()
    weights = weights[:, :, :frames]
    weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-10)  # softmax over the audio only
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = _median_filter((weights - mean) / std.clamp_min(1e-10), MEDIAN_FILTER_WIDTH)
    matrix = weights.mean(0)[len(prompt) + 1:]  # the text tokens and the end-of-text
    text_idx, time_idx = _dtw(-matrix.double().cpu().numpy())
    return timed_words(words, text_idx, time_idx)


def timed_words(words: list[tuple[str, list[int]]], text_idx: np.ndarray,
                time_idx: np.ndarray) -> list[TimedWord]:
    """Word times from a monotonic alignment path (text token index, encoder frame) that
    covers the words' tokens and the end-of-text: a word starts where its first token does."""
    jumps = np.pad(np.diff(text_idx), (1, 0), constant_values=1).astype(bool)
    jump_times = time_idx[jumps] / FRAMES_PER_SECOND
    bounds = np.pad(np.cumsum([len(ids) for _, ids in words]), (1, 0))
    out_words = []
    for (text, ids), a, b in zip(words, bounds[:-1], bounds[1:], strict=True):
        start = float(jump_times[min(a, len(jump_times) - 1)])
        end = float(jump_times[min(b, len(jump_times) - 1)])
        out_words.append(TimedWord(text, round(start, 3), round(max(end, start), 3), len(ids)))
    return out_words
