"""Silero VAD on onnxruntime alone: the ONNX model that ships in the silero-vad wheel, run one
32 ms window at a time, and silero-vad's rules that turn its speech probabilities into speech
regions (`get_speech_timestamps`, MIT licence), ported to plain Python so that no torch is
imported (the silero-vad package imports torch itself: 2 s at start-up). Same regions, to
the sample, as `silero_vad.get_speech_timestamps` with its ONNX model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

WINDOW_SAMPLES = {16000: 512, 8000: 256}  # samples per speech probability (32 ms)
CONTEXT_SAMPLES = {16000: 64, 8000: 32}  # samples of the previous window fed with each window
STATE_SHAPE = (2, 1, 128)  # the model's recurrent state, carried from window to window
NEG_THRESHOLD_GAP = 0.15  # speech ends below threshold - 0.15 (silero-vad's hysteresis)
MIN_SILENCE_AT_MAX_SPEECH_MS = 98  # a pause this long is a place to cut over-long speech


def model_file() -> Path:
    """silero_vad.onnx inside the installed silero-vad wheel, found without importing it."""
    spec = importlib.util.find_spec("silero_vad")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the silero-vad package is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "silero_vad.onnx"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the silero-vad package")
    return path


class SileroVad:
    """The Silero model in an onnxruntime session on one CPU thread."""

    def __init__(self, path: Path | None = None):
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.inter_op_num_threads = 1
        opts.intra_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(path or model_file()), sess_options=opts,
                                                    providers=["CPUExecutionProvider"])

    def probabilities(self, audio: np.ndarray, sample_rate: int) -> list[float]:
        """Speech probability of each window of `audio` (the last one zero-padded)."""
        window, context = WINDOW_SAMPLES[sample_rate], CONTEXT_SAMPLES[sample_rate]
        state = np.zeros(STATE_SHAPE, dtype=np.float32)
        previous = np.zeros((1, context), dtype=np.float32)
        sr = np.array(sample_rate, dtype=np.int64)
        probs = []
        for start in range(0, len(audio), window):
            chunk = np.zeros((1, window), dtype=np.float32)
            piece = audio[start:start + window]
            chunk[0, :len(piece)] = piece
            x = np.concatenate([previous, chunk], axis=1)
            out, state = self.session.run(None, {"input": x, "state": state, "sr": sr})
            previous = x[:, -context:]
            probs.append(float(out[0, 0]))
        return probs

    def speech_timestamps(self, audio: np.ndarray, sample_rate: int, threshold: float,
                          min_speech_duration_ms: int, max_speech_duration_s: float,
                          min_silence_duration_ms: int, speech_pad_ms: int) -> list[tuple[int, int]]:
        """(start, end) samples of each speech region, as silero-vad's `get_speech_timestamps`
        (8 or 16 kHz, or a multiple of 16 kHz, decimated to it)."""
        step = 1
        if sample_rate > 16000 and sample_rate % 16000 == 0:
            step, sample_rate = sample_rate // 16000, 16000
            audio = audio[::step]
        if sample_rate not in WINDOW_SAMPLES:
            raise ValueError(f"Silero VAD takes 8 or 16 kHz audio (or a multiple of 16 kHz), "
                             f"not {sample_rate} Hz")
        regions = speech_regions(self.probabilities(audio, sample_rate), sample_rate, len(audio),
                                 threshold, min_speech_duration_ms, max_speech_duration_s,
                                 min_silence_duration_ms, speech_pad_ms)
        return [(start * step, end * step) for start, end in regions]


def speech_regions(probs: list[float], sample_rate: int, audio_samples: int, threshold: float,
                   min_speech_duration_ms: int, max_speech_duration_s: float,
                   min_silence_duration_ms: int, speech_pad_ms: int) -> list[tuple[int, int]]:
    """silero-vad's `get_speech_timestamps_from_probs` (its defaults for everything not given):
    hysteresis on the probabilities, over-long speech cut at its longest pause (or where it
    gets too long), short regions dropped, then padding split between close neighbours."""
    window = WINDOW_SAMPLES[sample_rate]
    min_speech = sample_rate * min_speech_duration_ms / 1000
    pad = sample_rate * speech_pad_ms / 1000
    max_speech = sample_rate * max_speech_duration_s - window - 2 * pad
    min_silence = sample_rate * min_silence_duration_ms / 1000
    min_silence_at_max = sample_rate * MIN_SILENCE_AT_MAX_SPEECH_MS / 1000
    neg_threshold = max(threshold - NEG_THRESHOLD_GAP, 0.01)
    speeches: list[dict[str, int]] = []
    current: dict[str, int] = {}
    triggered = False
    temp_end = 0  # where the pause now running began (0: none)
    pauses: list[tuple[int, int]] = []  # (start, length) of the pauses within the current speech
    for i, prob in enumerate(probs):
        now = window * i
        if prob >= threshold and temp_end:
            if now - temp_end > min_silence_at_max:
                pauses.append((temp_end, now - temp_end))
            temp_end = 0
        if prob >= threshold and not triggered:
            triggered = True
            current["start"] = now
            continue
        if triggered and now - current["start"] > max_speech:
            if not pauses:  # nowhere to cut but here
                speeches.append({"start": current["start"], "end": now})
                current, triggered, temp_end = {}, False, 0
                continue
            end, length = max(pauses, key=lambda p: p[1])  # the longest pause
            speeches.append({"start": current["start"], "end": end})
            current = {"start": end + length} if length < now else {}  # speech goes on after it
            triggered, temp_end, pauses = bool(current), 0, []
        if prob < neg_threshold and triggered:
            if not temp_end:
                temp_end = now
            if now - temp_end < min_silence:
                continue
            current["end"] = temp_end
            if current["end"] - current["start"] > min_speech:
                speeches.append(current)
            current, triggered, temp_end, pauses = {}, False, 0, []
    if current and audio_samples - current["start"] > min_speech:
        speeches.append({"start": current["start"], "end": audio_samples})
    return _pad(speeches, pad, audio_samples)


def _pad(speeches: list[dict[str, int]], pad: float, audio_samples: int) -> list[tuple[int, int]]:
    """Widen each region by `pad`; neighbours closer than twice that share the gap."""
    for i, speech in enumerate(speeches):
        if i == 0:
            speech["start"] = int(max(0, speech["start"] - pad))
        if i == len(speeches) - 1:
            speech["end"] = int(min(audio_samples, speech["end"] + pad))
            continue
        following = speeches[i + 1]
        gap = following["start"] - speech["end"]
        if gap < 2 * pad:
            speech["end"] += int(gap // 2)
            following["start"] = int(max(0, following["start"] - gap // 2))
        else:
            speech["end"] = int(min(audio_samples, speech["end"] + pad))
            following["start"] = int(max(0, following["start"] - pad))
    return [(s["start"], s["end"]) for s in speeches]
