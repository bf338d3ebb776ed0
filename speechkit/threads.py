"""How many CPU threads the model math uses, sized to the cores this process may run on.

Every core, up to 8. On a small machine every core is also wanted by speechkit's own work
(ffmpeg decoding the next files, the VAD), and a math pool as wide as the machine once spun
against it: a 2-core VM took 153 s for 26 clips (122 s) with torch's 2 threads against 51 s
with 1, while the VAD ran on torch in the background. The VAD now runs on onnxruntime and
media decoding in ffmpeg, and on the same 2-core VM (15 short clips, `--engine torch`) 2
threads took 27.7 s against 42.7 s with 1. CTranslate2 runs many files on one one-thread
replica per thread (no pool to spin) and a single file on one replica with every thread
(see transcribe.py).
"""

from __future__ import annotations

import os

from speechkit.errors import SpeechkitError

THREADS_ENV = "SPEECHKIT_THREADS"  # the default of --threads
OMP_WAIT_ENV = "OMP_WAIT_POLICY"  # OpenMP's: how a thread out of work waits
MAX_DEFAULT_THREADS = 8  # Whisper-sized matrices stop gaining from more threads around here


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def cpu_model() -> str:
    """The processor's name as the kernel reports it (benchmarks print it with their figures)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def default_threads(cores: int | None = None) -> int:
    """Math threads for a machine with `cores` cores (default: this one)."""
    return min(cores or available_cores(), MAX_DEFAULT_THREADS)


def resolve_threads(threads: int | None = None) -> int:
    """The thread count to use: `threads` when given (>0), else $SPEECHKIT_THREADS, else the
    default for this machine."""
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
    return default_threads()


def passive_openmp_waits() -> None:
    """OpenMP threads out of work sleep instead of spinning, unless the user set
    OMP_WAIT_POLICY. Call before torch or CTranslate2 loads (OpenMP reads it once).

    With other work on the machine, torch's spinning threads took the cores its own threads
    waited for: `--engine torch` on a 3.6 s clip that falls back through every temperature
    took 107 s wall and 99 s CPU beside two busy processes on a 2-core VM, against 58 s and
    34 s with passive waits; on the quiet machine 28.5 s against 30.7 s (one run each), and
    CTranslate2 runs were unchanged either way."""
    os.environ.setdefault(OMP_WAIT_ENV, "PASSIVE")


def apply_torch_threads(threads: int) -> None:
    """Size torch's intra-op pool (process-wide) to `threads`."""
    import torch

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
