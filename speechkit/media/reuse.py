"""Recordings that several items read (the enrollment and test files of verification trials)
are decoded once and kept until their last use, within a memory budget."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable

import numpy as np

from speechkit.audio import SAMPLE_RATE
from speechkit.media.ffmpeg import decode_audio

REUSE_BUDGET_MB = 512  # decoded audio kept for later items at most (float32, 16 kHz: ~2.3 h)


class DecodedRecordings:
    """Whole recordings at 16 kHz by path. A path that items name more than once is kept after
    decoding until its last use, while the kept audio fits the budget; beyond it, or for a
    path named once, it is decoded each time. Safe to call from several decoding threads."""

    def __init__(self, paths: Iterable[str], budget_mb: float = REUSE_BUDGET_MB):
        self._uses = Counter(paths)
        self._kept: dict[str, np.ndarray] = {}
        self._budget = int(budget_mb * 2**20)
        self._bytes = 0
        self._lock = threading.Lock()
        self._decoding: dict[str, threading.Event] = {}  # paths another thread is decoding
        self.decoded = 0  # ffmpeg calls made (for tests and figures)

    def get(self, path: str) -> np.ndarray:
        while True:
            with self._lock:
                audio = self._kept.get(path)
                if audio is not None:
                    self._used(path)
                    return audio
                busy = self._decoding.get(path)
                if busy is None:
                    self._decoding[path] = done = threading.Event()
                    break
            busy.wait()  # the other thread's result is kept, unless it did not fit or failed
        try:
            audio = decode_audio(path, SAMPLE_RATE)
            with self._lock:
                self.decoded += 1
                if self._uses[path] > 1 and self._bytes + audio.nbytes <= self._budget:
                    self._kept[path] = audio
                    self._bytes += audio.nbytes
                self._used(path)
            return audio
        finally:
            with self._lock:
                del self._decoding[path]
            done.set()

    def _used(self, path: str) -> None:
        self._uses[path] -= 1
        if self._uses[path] <= 0 and path in self._kept:
            self._bytes -= self._kept.pop(path).nbytes
