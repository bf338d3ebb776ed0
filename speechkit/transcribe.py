"""`speechkit transcribe`: items -> model -> JSONL, with live progress and a summary table."""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from speechkit.data import Item, Result
from speechkit.formats import SubtitleOptions
from speechkit.models.base import DecodeOptions, SpeechModel
from speechkit.models.identity import ModelCard, model_card
from speechkit.models.registry import RuntimeOptions
from speechkit.results import ResultWriter
from speechkit.runtime import RunStats, Transcriber, peak_memory_mb
from speechkit.scale.options import ScaleOptions
from speechkit.terminal import plain, safe
from speechkit.threads import resolve_threads


@dataclass
class Summary:
    """The end-of-run figures, also returned to callers (bench, benchmarks)."""

    total: int
    ok: int
    failed: int
    skipped: int
    audio_s: float
    wall_s: float  # transcription loop only (model loading excluded)
    load_s: float
    rtfx: float
    peak_rss_mb: float
    peak_gpu_mb: float | None
    results_path: str
    settings: dict = field(default_factory=dict)  # device, dtype, quant, batch and beam used


    def to_dict(self) -> dict:
        return dict(self.__dict__)


def _hours(seconds: float) -> str:
    h, rem = divmod(int(seconds), 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}"


def summary_table(s: Summary, title: str = "speechkit transcribe") -> Table:
    t = Table(title=plain(title), show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("files ok", str(s.ok))
    t.add_row("files failed", f"[red]{s.failed}[/]" if s.failed else "0")
    if s.skipped:
        t.add_row("already done (resumed)", str(s.skipped))
    t.add_row("audio", f"{_hours(s.audio_s)} ({s.audio_s:.1f} s)")
    t.add_row("wall time", f"{s.wall_s:.1f} s (+{s.load_s:.1f} s model load)")
    t.add_row("RTFx", f"{s.rtfx:.1f}")
    t.add_row("peak memory", f"{s.peak_rss_mb:,.0f} MB RSS"
              + (f", {s.peak_gpu_mb:,.0f} MB GPU" if s.peak_gpu_mb else ""))
    t.add_row("results", plain(s.results_path))
    return t


def load_with_status(model: str | SpeechModel | ModelCard, runtime: RuntimeOptions,
                     console: Console, progress: bool = True) -> tuple[SpeechModel, float]:
    """(the model, seconds it took to load); a loaded model passes through."""
    card = model_card(model, runtime)
    if card.model is not None:
        return card.model, 0.0
    t0 = time.perf_counter()
    with console.status(plain(f"loading {card.name} ..."), spinner="dots") if progress else nullcontext():
        loaded = card.load()
    return loaded, time.perf_counter() - t0


def transcribe_items(items: Sequence[Item], model: SpeechModel, options: DecodeOptions,
                     results: Path | ResultWriter, *, batch_size: int | None = None,
                     formats: tuple[str, ...] = (), format_dir: Path | None = None,
                     subtitles: SubtitleOptions = SubtitleOptions(),
                     overwrite: bool = False, on_result=None, on_progress=None) -> RunStats:
    """Run items through a loaded model into a resumable JSONL file (no terminal output)."""
    if formats and format_dir is not None:
        Path(format_dir).mkdir(parents=True, exist_ok=True)
    if not isinstance(results, ResultWriter):
        with ResultWriter(results, overwrite=overwrite) as writer:
            return transcribe_items(items, model, options, writer, batch_size=batch_size,
                                    formats=formats, format_dir=format_dir, subtitles=subtitles,
                                    on_result=on_result, on_progress=on_progress)
    runner = Transcriber(model, options, results, batch_size=batch_size, formats=formats,
                         format_dir=format_dir, subtitles=subtitles, on_result=on_result,
                         on_progress=on_progress)
    return runner.run(items)


PROGRESS_LINE_EVERY_S = 10.0  # without a terminal (logs, CI): one progress line this often


class _ProgressLines:
    """Progress for logs: a plain line every PROGRESS_LINE_EVERY_S seconds."""

    def __init__(self, console: Console, label: str, total: int):
        self.console, self.label, self.total = console, label, total
        self.last = time.perf_counter()

    def update(self, stats: RunStats) -> None:
        now = time.perf_counter()
        if now - self.last < PROGRESS_LINE_EVERY_S:
            return
        self.last = now
        under_way = f" ({stats.progress:.1f} counting files under way)" if stats.in_flight else ""
        self.console.print(f"{self.label}: {stats.done}/{self.total} files{under_way}, "
                           f"{_hours(stats.decoded_s)} of audio decoded, {stats.wall_s:.0f} s, "
                           f"RTFx {stats.live_rtfx:.1f}",
                           markup=False, highlight=False)


def _sized_to(inputs: int, card: ModelCard, runtime: RuntimeOptions,
              scale: ScaleOptions) -> tuple[ModelCard, RuntimeOptions]:
    """Threads (every core) and CTranslate2 replicas sized to the work when the user gave no
    thread count (Ray workers, elsewhere, size their own). CTranslate2 runs many files on one
    one-thread replica per core side by side and one file on one replica with every thread,
    which encodes a lone short window twice as fast on 2 cores (a long file's pieces ran as
    fast either way)."""
    if runtime.threads or scale.distributed:
        return card, runtime
    one_replica = card.identity.get("engine") == "ctranslate2" and inputs == 1
    runtime = replace(runtime, threads=resolve_threads(None), replicas=1 if one_replica else None)
    return replace(card, runtime=runtime), runtime


def transcribe_to_jsonl(items: Sequence[Item], model_name: str | SpeechModel | ModelCard,
                        options: DecodeOptions, results: Path | ResultWriter, *,
                        runtime: RuntimeOptions = RuntimeOptions(),
                        batch_size: int | None = None, formats: tuple[str, ...] = (),
                        format_dir: Path | None = None,
                        subtitles: SubtitleOptions = SubtitleOptions(), overwrite: bool = False,
                        console: Console | None = None, progress: bool = True,
                        echo: bool = False, label: str = "transcribing", load_s: float = 0.0,
                        title: str = "speechkit transcribe",
                        scale: ScaleOptions = ScaleOptions()) -> Summary:
    """Check the results file, load the model if any item is left to do (or take a loaded
    one), run the items with a progress bar, print failures and a summary.

    The results file is locked for the whole run; finished lines made by another model or
    other settings stop the run before the model loads. `scale` picks the runner: this
    process, or a Ray cluster whose workers load the model.
    """
    console = console or Console(stderr=True)
    if not isinstance(results, ResultWriter):
        card = model_card(model_name, runtime)  # cheap: identity and defaults, no weights
        with ResultWriter(results, overwrite=overwrite) as writer:
            return transcribe_to_jsonl(
                items, card, options, writer, runtime=runtime, batch_size=batch_size,
                formats=formats, format_dir=format_dir, subtitles=subtitles, console=console,
                progress=progress, echo=echo, label=label, load_s=load_s, title=title, scale=scale)
    writer, card = results, model_card(model_name, runtime)
    options = card.resolve(options)
    writer.check_reuse([it.id for it in items], card.identity, options.to_dict())
    if not (pending := [it for it in items if not writer.done(it.id)]):
        return _already_done(items, writer, console, echo, title)
    card, runtime = _sized_to(len(pending), card, runtime, scale)
    bar, lines = _progress_display(console, label, len(items), progress)
    echoed: list[Result] = []

    def on_result(result: Result, stats: RunStats) -> None:
        if result.status != "ok":
            console.print(f"[red]failed:[/] {safe(result.error)}", highlight=False, soft_wrap=True)
        elif echo:
            echoed.append(result)
        on_progress(stats)

    def on_progress(stats: RunStats) -> None:
        bar.update(task_id, completed=stats.progress, audio=_hours(stats.decoded_s),
                   rtfx=f"{stats.live_rtfx:.1f}")
        if lines:
            lines.update(stats)

    runner, seconds = _runner(card, options, writer, scale, console, progress,
                              batch_size=batch_size, formats=formats, format_dir=format_dir,
                              subtitles=subtitles, on_result=on_result, on_progress=on_progress)
    with bar:
        task_id = bar.add_task("transcribe", total=len(items), audio="0:00:00", rtfx="-")
        stats = runner.run(items)
    load_s += seconds + getattr(runner, "start_s", 0.0)  # Ray: starting or joining the cluster
    if echo:
        _echo(items, {r.id: r for r in echoed})
    summary = _summary(stats, load_s, writer)
    console.print(summary_table(summary, title=title))
    return summary


def _runner(card: ModelCard, options: DecodeOptions, writer: ResultWriter, scale: ScaleOptions,
            console: Console, progress: bool, **kw) -> tuple[Transcriber | Any, float]:
    """The runner of this run and the seconds spent loading the model here: the local runner
    loads it in this process, the Ray runner on each of its workers."""
    if kw.get("formats") and kw.get("format_dir") is not None:
        Path(kw["format_dir"]).mkdir(parents=True, exist_ok=True)
    if scale.distributed:
        from speechkit.scale.runner import RayRunner

        return RayRunner(card, options, writer, scale, **kw), 0.0
    model, seconds = load_with_status(card, card.runtime, console, progress)
    return Transcriber(model, options, writer, **kw), seconds


def _progress_display(console: Console, label: str, total: int,
                      progress: bool) -> tuple[Progress, _ProgressLines | None]:
    """A live bar on a terminal; without one, a plain line every PROGRESS_LINE_EVERY_S."""
    live = progress and console.is_terminal
    bar = Progress(TextColumn(f"[bold]{label}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[audio]} audio"), TextColumn("RTFx {task.fields[rtfx]}"),
                   TimeElapsedColumn(), console=console, disable=not live, transient=True)
    return bar, (_ProgressLines(console, label, total) if progress and not live else None)


def _summary(stats: RunStats, load_s: float, writer: ResultWriter) -> Summary:
    mem = peak_memory_mb()
    return Summary(total=stats.total, ok=stats.ok, failed=stats.failed, skipped=stats.skipped,
                   audio_s=stats.audio_s, wall_s=stats.wall_s, load_s=load_s, rtfx=stats.rtfx,
                   peak_rss_mb=mem["peak_rss_mb"], peak_gpu_mb=mem.get("peak_gpu_mb"),
                   results_path=str(writer.path), settings=stats.settings)


def _echo(items: Sequence[Item], done: dict[str, Result]) -> None:
    """The transcripts on stdout in input order: the text alone for one input, `ID: text` per
    line for several (failed items are named on stderr already)."""
    for it in items:
        if (r := done.get(it.id)) is not None and r.status == "ok":
            print(r.text if len(items) == 1 else f"{it.id}: {r.text}")


def _already_done(items: Sequence[Item], writer: ResultWriter, console: Console, echo: bool,
                  title: str) -> Summary:
    """A rerun with nothing left to do: the existing results, and no model loaded."""
    console.print(f"nothing to do: all {len(items)} item(s) are done in {writer.path} with this "
                  "model and settings (--overwrite redoes them)", markup=False, highlight=False,
                  soft_wrap=True)
    if echo:
        _echo(items, {it.id: writer.latest(it.id) for it in items})
    mem = peak_memory_mb()
    summary = Summary(total=len(items), ok=0, failed=0, skipped=len(items), audio_s=0.0,
                      wall_s=0.0, load_s=0.0, rtfx=0.0, peak_rss_mb=mem["peak_rss_mb"],
                      peak_gpu_mb=mem.get("peak_gpu_mb"), results_path=str(writer.path))
    console.print(summary_table(summary, title=title))
    return summary
