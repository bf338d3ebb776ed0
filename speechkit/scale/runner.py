"""The driver of a Ray run: schedule the items not yet done, write each result line once as it
arrives, in the same JSONL file and schema as the local runner.

Exactly once: Ray restarts a killed model actor and retries its task, so a window can come
back twice (a retried task yields its rows again); the driver writes an id's first line only.
Resume: ids already "ok" in the results file are skipped before anything is scheduled,
whichever runner wrote them.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from speechkit.data import Item, Result
from speechkit.errors import SpeechkitError, first_line
from speechkit.formats import SubtitleOptions, output_stems, write_formats
from speechkit.models.base import DecodeOptions
from speechkit.models.identity import ModelCard
from speechkit.results import ResultWriter
from speechkit.runtime import DEFAULT_BATCH_CPU, DEFAULT_BATCH_CUDA, WINDOW_BATCHES, RunStats
from speechkit.scale.cluster import DECODE_CPUS, WorkerPlan, connect, plan_workers
from speechkit.scale.decode import decode_row, item_row
from speechkit.scale.options import ScaleOptions

WORKER_ERROR = re.compile(r"^speechkit\.errors\.\w*Error: (.+)$", re.MULTILINE)
LOST = ("was not returned by the Ray workers (lost with a node that left the cluster); rerun "
        "the same command to retry it")


class RayRunner:
    """Runs items on a Ray cluster and writes one Result per item, as `Transcriber` does."""

    def __init__(self, card: ModelCard, options: DecodeOptions, writer: ResultWriter,
                 scale: ScaleOptions, batch_size: int | None = None,
                 formats: tuple[str, ...] = (), format_dir: Path | None = None,
                 subtitles: SubtitleOptions = SubtitleOptions(),
                 on_result: Callable[[Result, RunStats], None] | None = None,
                 on_progress: Callable[[RunStats], None] | None = None):
        if card.model is not None:
            raise SpeechkitError(f"{card.name}: the Ray runner loads the model on each worker; "
                                 "pass the model by name or path, not loaded")
        self.card, self.scale, self.writer = card, scale, writer
        self.options = card.resolve(options)
        self.batch_size = batch_size
        self.formats, self.format_dir, self.subtitles = formats, format_dir, subtitles
        self.on_result, self.on_progress = on_result, on_progress
        self.stats = RunStats()
        self.start_s = 0.0  # joining or starting the cluster
        self.duplicates = 0  # lines of a retried task that were already written

    def run(self, items: Sequence[Item]) -> RunStats:
        self.stats = RunStats(total=len(items))
        self.stems = output_stems((it.id, it.path) for it in items)
        self.writer.check_reuse([it.id for it in items], self.card.identity, self.options.to_dict())
        todo = [it for it in items if not self.writer.done(it.id)]
        self.stats.skipped = len(items) - len(todo)
        if not todo:
            return self.stats
        started, self.start_s = connect(self.scale.address)
        try:
            self._run(todo)
        finally:
            if started:
                import ray

                ray.shutdown()
        self.stats.tick()
        return self.stats

    def _run(self, todo: list[Item]) -> None:
        plan = plan_workers(self.scale, self.card.runtime.threads, self.card.runtime.device)
        self.stats.settings = {"runner": "ray", "workers": plan.workers}
        self.stats.started = time.perf_counter()  # wall time from here: the cluster is up
        seen: set[str] = set()
        try:
            for row in _dataset(todo, self.card, self.options, self.batch_size, plan).iter_rows():
                result = Result.from_dict(json.loads(row["result"]))
                if result.id in seen:
                    self.duplicates += 1
                    continue
                seen.add(result.id)
                self._write(result)
        except Exception as e:
            raise _user_error(e) from None
        for it in todo:
            if it.id not in seen:
                self._write(Result.failed(it, f"{it.path}: {LOST}", task=self.options.task,
                                          decode=self.options.to_dict()))

    def _write(self, result: Result) -> None:
        if result.status == "ok" and self.formats and self.format_dir is not None:
            write_formats(result, self.formats, self.format_dir, self.stems[result.id],
                          self.subtitles)
        self.writer.write(result)
        stats = self.stats
        if result.status == "ok":
            stats.ok += 1
            stats.audio_s += result.duration_s or 0.0
        else:
            stats.failed += 1
        stats.decoded_s += result.duration_s or 0.0
        if result.model and result.model.get("runtime") and "device" not in stats.settings:
            stats.settings = {**result.model["runtime"], **stats.settings}
        stats.tick()
        if self.on_result:
            self.on_result(result, stats)
        elif self.on_progress:
            self.on_progress(stats)


def _dataset(todo: list[Item], card: ModelCard, options: DecodeOptions, batch_size: int | None,
             plan: WorkerPlan) -> Any:
    """items -> decode (CPU tasks) -> model (an actor pool) -> result lines, streamed."""
    import ray.data

    from speechkit.scale.worker import ModelWorker

    window = (batch_size or (DEFAULT_BATCH_CUDA if plan.gpus else DEFAULT_BATCH_CPU)) * WINDOW_BATCHES
    settings = {"runner": "ray", "workers": plan.workers}
    ds = ray.data.from_items([item_row(it) for it in todo],
                             override_num_blocks=max(1, min(len(todo), 4 * plan.decoders)))
    ds = ds.map(decode_row, fn_kwargs={"task": options.task}, num_cpus=DECODE_CPUS,
                compute=ray.data.TaskPoolStrategy(size=plan.decoders))
    # Ray Data's actor defaults are the fault tolerance: a killed actor is restarted without
    # limit (max_restarts -1) and the window it held runs again (max_task_retries -1).
    return ds.map_batches(
        ModelWorker, batch_size=window, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=plan.workers),
        num_cpus=plan.cpus, num_gpus=plan.gpus or None,
        fn_constructor_kwargs={"card": card, "options": options, "batch_size": batch_size,
                               "threads": plan.threads, "settings": settings})


def _user_error(e: Exception) -> Exception:
    """A SpeechkitError raised on a worker (e.g. a model that cannot load there) as the same
    one-line error here; anything else as it came."""
    seen: BaseException | None = e
    while seen is not None:
        cause = getattr(seen, "cause", None) or seen.__cause__  # Ray keeps the worker's in .cause
        if isinstance(seen, SpeechkitError) and not isinstance(cause, SpeechkitError):
            return SpeechkitError(first_line(seen, 500))
        seen = cause
    # A worker that failed while starting (the model did not load) reaches here only as the
    # text of its traceback, which ends with the error's own line.
    found = WORKER_ERROR.findall(str(e))
    return SpeechkitError(found[-1]) if found else e
