"""WAV files: writing 16 kHz clips, and telling a cut-off one from its header (ffmpeg decodes
the bytes that are there without a word, so a truncated copy would pass as a shorter one)."""

from __future__ import annotations

import os
import wave
from pathlib import Path

import numpy as np

from speechkit.audio import SAMPLE_RATE

WAV_SCAN_BYTES = 1 << 16  # bytes at the start of a WAV searched for its fmt and data chunks
TRUNCATED_AFTER_S = 0.5  # s; a WAV missing more audio than its header promises is truncated


def wav_shortfall(raw: bytes) -> tuple[float, float] | None:
    """(promised, present) seconds when a RIFF/WAVE file is shorter than its header says.

    ffmpeg decodes the bytes that are there without a word, so a cut-off copy would pass.
    """
    with open(raw, "rb") as f:
        head = f.read(WAV_SCAN_BYTES)
        size = os.fstat(f.fileno()).st_size
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    pos, byte_rate = 12, 0
    while pos + 8 <= len(head):
        chunk, n = head[pos : pos + 4], int.from_bytes(head[pos + 4 : pos + 8], "little")
        body = pos + 8
        if chunk == b"fmt " and body + 12 <= len(head):
            byte_rate = int.from_bytes(head[body + 8 : body + 12], "little")  # bytes per second
        elif chunk == b"data":
            if byte_rate <= 0 or n in (0, 0xFFFFFFFF):  # 0 / all ones: written to a pipe
                return None
            present = max(0, size - body)
            if (n - present) / byte_rate > TRUNCATED_AFTER_S:
                return n / byte_rate, present / byte_rate
            return None
        pos = body + n + (n & 1)  # chunks are padded to an even length
    return None


def write_wav(path: Path, audio: np.ndarray) -> Path:
    """16-bit mono 16 kHz WAV of float samples in [-1, 1], written under a temporary name and
    moved into place."""
    pcm = (np.clip(audio, -1.0, 1.0) * 32767).round().astype("<i2")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    os.replace(tmp, path)
    return path
