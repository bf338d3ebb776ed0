"""How many CPU threads the model math uses, sized to the cores this process may run on.

On a small machine every core is also wanted by speechkit's own work (ffmpeg decoding the
next files, voice activity detection): a math pool as wide as the machine then spins against
it. Measured on a 2-core VM, Whisper base, 26 clips (122 s): 153 s whole process with torch's
default 2 threads, 51 s with 1 (OpenMP threads busy-waiting for a core the decoder holds).

An engine that runs one-thread model replicas side by side (CTranslate2 here) has no pool to
spin: it gets every core, and the operating system shares them with ffmpeg. Measured on a
2-core VM, 15 short clips: 24.7 s whole process on two replicas against 34.8 s on one.
"""

from __future__ import annotations

import os

from speechkit.errors import SpeechkitError

THREADS_ENV = "SPEECHKIT_THREADS"  # the default of --threads
SMALL_MACHINE_CORES = 4  # at most this many cores: one is left to media decoding and VAD
MAX_DEFAULT_THREADS = 8  # Whisper-sized matrices stop gaining from more threads around here


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_threads(cores: int | None = None, inputs: int | None = None,
                    replicated: bool = False) -> int:
    """Math threads for a machine with `cores` cores (default: this one) and a run of
    `inputs` files (None: unknown). One file is decoded before the model starts, so nothing
    of speechkit's competes with the math and every core goes to it; so do they all when the
    engine runs `replicated` one-thread replicas."""
    cores = cores or available_cores()
    if inputs == 1 or replicated:
        return min(cores, MAX_DEFAULT_THREADS)
    if cores <= SMALL_MACHINE_CORES:
        return max(1, cores - 1)
    return min(cores, MAX_DEFAULT_THREADS)


def resolve_threads(threads: int | None = None, inputs: int | None = None,
                    replicated: bool = False) -> int:
    """The thread count to use: `threads` when given (>0), else $SPEECHKIT_THREADS, else the
    default for this machine, a run of `inputs` files and the engine (`replicated`)."""
    if threads:
        if threads < 0:
            raise SpeechkitError(f"--threads {threads}: give a positive number, or 0 for automatic")
        return threads
    env = os.environ.get(THREADS_ENV, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            value = -1
        if value < 0:
            raise SpeechkitError(f"{THREADS_ENV}={env!r} is not a thread count; set it to a "
                                 "positive number, or 0 (or unset it) for automatic")
        if value:
            return value
    return default_threads(inputs=inputs, replicated=replicated)


def apply_torch_threads(threads: int) -> None:
    """Size torch's intra-op pool (process-wide) to `threads`."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
