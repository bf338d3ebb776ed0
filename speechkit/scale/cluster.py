"""Joining a Ray cluster (or starting one on this machine) and sizing the model workers."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from speechkit.errors import SpeechkitError
from speechkit.scale import INSTALL_HINT, require_ray
from speechkit.scale.options import ScaleOptions, cluster_endpoint

DECODE_CPUS = 0.25  # logical CPUs a decode task asks for: one ffmpeg process, mostly waiting on I/O
DECODE_RESERVE = 1.0  # CPUs kept for decode tasks beside CPU model workers (half a 1-CPU cluster)
CPU_WORKER_THREADS = 2  # math threads of a CPU model worker when the workers are sized by the CPUs
GPU_WORKER_CPUS = 1.0  # a GPU worker's own CPU: batching and its Python loop
CONNECT_TIMEOUT_S = 10.0  # to reach a cluster's address; Ray itself retries for many minutes


@dataclass(frozen=True)
class WorkerPlan:
    """How many model actors run and what each asks Ray for."""

    workers: int
    gpus: float  # per worker
    cpus: float  # per worker (logical: what Ray reserves)
    threads: int | None  # math threads of a CPU worker (None: the model's default on a GPU)
    decoders: int  # decode tasks at once: what the workers leave free, so they never wait for CPUs


def connect(address: str | None) -> tuple[bool, float]:
    """Join the cluster at `address` (see ScaleOptions.address), or start a local one sized
    to this machine; a Ray already running in this process is used as it is. Returns (whether
    this call started it, seconds taken)."""
    ray = require_ray()
    quiet = not logging.getLogger("speechkit").isEnabledFor(logging.DEBUG)
    if ray.is_initialized():
        _quiet_data(quiet)
        return False, 0.0
    t0 = time.perf_counter()
    reachable(address or os.environ.get("RAY_ADDRESS"))
    if quiet:  # the core workers' own log lines stay in the session's log files
        os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "fatal")
    try:
        with _stderr_closed(quiet):  # Ray's core announces RAY_BACKEND_LOG_LEVEL on stderr as it starts
            ray.init(address=address, include_dashboard=False, log_to_driver=not quiet,
                     logging_level=logging.ERROR if quiet else logging.INFO, configure_logging=True)
    except ConnectionError as e:
        raise SpeechkitError(f"no Ray cluster at --address {address or os.environ.get('RAY_ADDRESS')} "
                             f"({e}); start one with `ray start --head`, or leave --address out to "
                             "run a local one") from None
    except ValueError as e:
        if "ray[client]" not in str(e):
            raise
        raise SpeechkitError(f"--address {address or os.environ.get('RAY_ADDRESS')}: a ray:// address "
                             "needs the Ray Client, which is "
                             f"not installed; install it with: {INSTALL_HINT}") from None
    _quiet_data(quiet)
    return True, time.perf_counter() - t0


def reachable(address: str | None, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within `timeout` when nothing listens at a HOST:PORT address (ray.init would keep
    retrying it for minutes); `auto`, `local` and no address are Ray's to resolve."""
    if not address:
        return
    endpoint = cluster_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as e:
        why = "timed out" if isinstance(e, TimeoutError) else (e.strerror or type(e).__name__)
        raise SpeechkitError(f"no Ray cluster at --address {address} ({why} after at most "
                             f"{timeout:g} s); start one with `ray start --head`, check the host "
                             "and port, or leave --address out to run a local one") from None


@contextlib.contextmanager
def _stderr_closed(quiet: bool) -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null for the block when `quiet` (C++ code writes there
    directly, past Python's logging); the services started meanwhile log to the session's files."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def _quiet_data(quiet: bool) -> None:
    """Ray Data's progress bars and plan logs stay off unless --debug: speechkit draws its own."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = not quiet
    if quiet:
        logging.getLogger("ray.data").setLevel(logging.ERROR)


def plan_workers(scale: ScaleOptions, threads: int | None, device: str) -> WorkerPlan:
    """Workers sized to the cluster: one per GPU (or per `gpus_per_worker` GPUs) where it has
    GPUs and the model may use them, else CPU workers of CPU_WORKER_THREADS cores each. Decode
    tasks get the CPUs the workers leave, and never more: a worker waiting for a CPU that
    decoding holds would stall the run (Ray Data does not reserve CPUs for actors)."""
    ray = require_ray()
    have = ray.cluster_resources()
    cpus, gpus = float(have.get("CPU", 0)), float(have.get("GPU", 0))
    gpw = scale.gpus_per_worker
    if gpw is None:
        gpw = 1.0 if gpus and device != "cpu" else 0.0
    if gpw > 0:
        if gpw > gpus:
            raise SpeechkitError(f"--gpus-per-worker {gpw:g}: the Ray cluster has {gpus:g} GPU(s); "
                                 "use --gpus-per-worker 0 for CPU workers, or a cluster with GPUs")
        workers = scale.workers or max(1, int(gpus // gpw))
        share, threads_ = GPU_WORKER_CPUS, threads
    else:
        if device.startswith("cuda"):
            raise SpeechkitError("--device cuda with --gpus-per-worker 0: CPU workers cannot use "
                                 "a GPU; give --gpus-per-worker 1, or --device cpu")
        free = cpus - min(DECODE_RESERVE, cpus / 2)
        workers = scale.workers or max(1, int(free // CPU_WORKER_THREADS))
        share = min(float(CPU_WORKER_THREADS), free / workers)
        share = float(int(share)) if share >= 1 else round(share, 2)  # Ray: whole numbers above 1
        threads_ = threads or max(1, int(share))
    decoders = int((cpus - workers * share) // DECODE_CPUS)
    if share <= 0 or decoders < 1:
        raise SpeechkitError(f"the Ray cluster has {cpus:g} CPU(s), too few for {workers} model "
                             "worker(s) and media decoding; use fewer --workers")
    return WorkerPlan(workers, gpw, share, threads_, decoders)
