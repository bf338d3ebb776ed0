"""Where a transcribe or bench job runs: in this process (`local`) or on a Ray cluster."""

from __future__ import annotations

from dataclasses import dataclass

from speechkit.errors import SpeechkitError

RUNNERS = ("local", "ray")
ADDRESS_WORDS = ("auto", "local")  # Ray's own names: the cluster on this machine, a new one
CLIENT_SCHEME = "ray://"  # Ray Client: ray://HOST:PORT (port 10001 by default)


def cluster_endpoint(address: str) -> tuple[str, int] | None:
    """(host, port) that `--address` names, None for Ray's words `auto` and `local`; a
    malformed address is an error naming the forms Ray takes."""
    text = address.strip()
    if text in ADDRESS_WORDS:
        return None
    rest = text[len(CLIENT_SCHEME):] if text.startswith(CLIENT_SCHEME) else text
    host, sep, port = rest.rpartition(":")
    host = host.strip("[]")  # [::1]:6379
    if not sep or not host or any(c.isspace() or c in "/?#@" for c in host) or not port.isdigit() \
            or not 0 < int(port) < 65536:
        raise SpeechkitError(f"--address {address!r} is not a Ray address; give HOST:PORT (the "
                             "head's GCS, e.g. 10.0.0.5:6379), ray://HOST:10001 (Ray Client) or "
                             "auto (the cluster `ray start` runs on this machine)")
    return host, int(port)


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
        if self.address is not None:
            cluster_endpoint(self.address)  # a malformed address is refused before any work
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
