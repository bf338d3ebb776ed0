"""The C heap of a speechkit process: freed memory is kept for the next window.

Whisper's encoder on CTranslate2 allocates and frees the same large buffers for every 30 s
window (the attention scores of base alone are 72 MB a layer). glibc serves requests over
32 MB with a fresh `mmap` and unmaps them on free, so every window faulted its buffers in
again: on a 2-core VM, 15 short clips took 2.2 million page faults and 7.5 s of system time
out of 32 s of CPU. Served from one heap that is never trimmed, the same run took 140
thousand faults and 0.6 s of system time, 19.1 -> 14.1 s wall and a lower peak RSS (505 ->
454 MB): the buffers are reused instead of returned and faulted in again.

`keep_freed_memory()` sets that policy (`mallopt`: no mmap for large blocks, no trimming, one
arena) for the whole process. The command line calls it first thing, while the process has
one thread; a program that imports speechkit as a library keeps its own allocator policy.
`SPEECHKIT_HEAP=system` leaves glibc's defaults.

Reading weights is the exception (`loading_weights()`): CTranslate2 reads whisper-base's
139 MB of float16 and quantizes it to int8 through temporaries that are freed once, and a
never-trimmed heap kept them as peak memory (short clips: 362 MB peak RSS against 322 MB with
glibc's defaults). While weights load, large blocks are mapped again and so go back to the
system when freed, as do the weights themselves when a model is unloaded.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

HEAP_ENV = "SPEECHKIT_HEAP"  # "system": leave the C allocator's defaults
M_TRIM_THRESHOLD = -1  # glibc malloc.h: free memory kept at the heap's top before trimming
M_MMAP_MAX = -4  # most blocks served by mmap at once (0: none, all from the heap)
M_ARENA_MAX = -8  # most arenas; threads share them past it
NEVER_TRIM = 2**31 - 1  # mallopt takes an int
GLIBC_MMAP_MAX = 65536  # glibc's defaults, back while weights load
GLIBC_TRIM_THRESHOLD = 128 * 1024

_mallopt: Any = None  # libc's mallopt once the policy is in force


def keep_freed_memory() -> bool:
    """Keep freed C memory in the process for reuse (glibc only; call while the process has
    one thread). Returns whether the policy was set."""
    if os.environ.get(HEAP_ENV, "").strip().lower() == "system":
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # One arena: blocks freed by a model thread go back to the heap the next window is cut
    # from (glibc's per-thread arenas shrink their heaps on free, faulting them in again).
    if not all(mallopt(option, value) == 1 for option, value in (
            (M_ARENA_MAX, 1), (M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))):
        return False
    global _mallopt
    _mallopt = mallopt
    return True


@contextmanager
def loading_weights() -> Iterator[None]:
    """glibc's defaults for large blocks while a model's weights are read, the policy after
    (nothing changes where the policy is not in force). Not reentrant."""
    mallopt = _mallopt
    if mallopt is None:
        yield
        return
    mallopt(M_MMAP_MAX, GLIBC_MMAP_MAX)
    mallopt(M_TRIM_THRESHOLD, GLIBC_TRIM_THRESHOLD)
    try:
        yield
    finally:
        mallopt(M_MMAP_MAX, 0)
        mallopt(M_TRIM_THRESHOLD, NEVER_TRIM)
