"""Lip crops in worker processes, so face tracking (CPU-bound, holds the GIL) runs beside the
model instead of between its batches."""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from speechkit.media.lips.stream import LipStream, lip_stream

MAX_WORKERS = 4  # crop processes at most; each holds a landmark model and one clip's frames


def default_workers() -> int:
    """Half the usable cores (the model keeps the other half), at least one: 1 on 2 cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cores // 2))


def _init_worker() -> None:
    """One OpenCV thread per worker (the workers are the parallelism); Ctrl-C is the parent's
    to handle: it stops the run and writes the resume line, workers print nothing."""
    import cv2

    cv2.setNumThreads(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class CropPool:
    """A pool of crop processes (spawned, never forked: the parent may hold torch threads).
    `lip_stream` blocks the calling thread until a worker returns the clip's stream."""

    def __init__(self, workers: int | None = None):
        self.workers = workers or default_workers()
        self._pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                         initializer=_init_worker)

    def lip_stream(self, path: str | os.PathLike, **kwargs: Any) -> LipStream:
        return self._pool.submit(lip_stream, path, **kwargs).result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> CropPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
