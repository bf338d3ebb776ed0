"""Where a transcribe or bench job runs: in this process (`local`) or on a Ray cluster."""

from __future__ import annotations

from dataclasses import dataclass

from speechkit.errors import SpeechkitError

RUNNERS = ("local", "ray")


@dataclass(frozen=True)
class ScaleOptions:
    """`--runner` and the Ray settings beside it (ignored by the local runner)."""

    runner: str = "local"  # local: this process; ray: a Ray cluster
    # None: the cluster in $RAY_ADDRESS, else a new local one sized to this machine;
    # "auto": the cluster already running on this machine (`ray start`); ray://HOST:PORT: Ray Client
    address: str | None = None
    workers: int | None = None  # model actors; None: one per GPU, else by the CPUs
    gpus_per_worker: float | None = None  # None: 1 where the cluster has GPUs, else 0

    def __post_init__(self) -> None:
        if self.runner not in RUNNERS:
            raise SpeechkitError(f"unknown --runner {self.runner!r}; use one of {', '.join(RUNNERS)}")
        if self.workers is not None and self.workers < 1:
            raise SpeechkitError(f"--workers {self.workers}: give at least 1 (or leave it out for "
                                 "one per GPU)")
        if self.gpus_per_worker is not None and self.gpus_per_worker < 0:
            raise SpeechkitError(f"--gpus-per-worker {self.gpus_per_worker}: give 0 (CPU workers) "
                                 "or more")

    @property
    def distributed(self) -> bool:
        return self.runner == "ray"

    def unused_warnings(self) -> list[str]:
        """One line per Ray option given to a local run (it changes nothing there)."""
        if self.distributed:
            return []
        given = {"--address": self.address, "--workers": self.workers,
                 "--gpus-per-worker": self.gpus_per_worker}
        return [f"{name} is ignored: it sets up --runner ray, and this run is local"
                for name, value in given.items() if value is not None]
