"""`speechkit bench`: run a model on a benchmark suite and score it beside published numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from speechkit.commands.options import (
    Address,
    BatchSize,
    BeamSize,
    Device,
    Dtype,
    EncoderWindow,
    Engine,
    GpusPerWorker,
    Language,
    LoraGate,
    LoraScale,
    MaxNewTokens,
    Model,
    Normalizer,
    NoSpeechThreshold,
    Overwrite,
    Progress,
    Prompt,
    Quant,
    Runner,
    Threads,
    Workers,
)
from speechkit.terminal import plain, safe

if TYPE_CHECKING:
    from speechkit.evaluation.bench import BenchRun
    from speechkit.evaluation.sweep import SweepRun

out = Console()
Sweep = Annotated[list[str] | None, typer.Option(
    "--sweep", metavar="KEY=V1,V2",
    help="Run every combination of these settings (repeatable: dtype, quant, beam, batch, "
         "engine, threads, no_speech_threshold, ...), each in its own sub-directory of "
         "--out-dir, and print one table with every metric, RTFx and peak memory per "
         "setting beside the first row.")]
CheckInvariance = Annotated[int | None, typer.Option(
    "--check-batch-invariance", min=1, metavar="N",
    help="Decode N sampled items (seeded) again one at a time and list every item whose text "
         "differs from the batched run; scores.json records it and `compare` fails on it.")]
err = Console(stderr=True)


def bench(
    suite: Annotated[str, typer.Argument(
        help="Suite name (see `speechkit manifest --list`), a suite JSON file, or a JSONL "
             "manifest of your own items (with references).",
        show_default=False)],
    model: Model = "whisper-base",
    task: Annotated[str | None, typer.Option(
        "--task", "-t", help="For a JSONL manifest: asr, st, sv, er, sqa or aac (default: the "
        "lines' own `task`).")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="Dataset root in its standard layout (librivox-mini finds its data itself).")] = None,
    split: Annotated[str | None, typer.Option(help="Split (default: the suite's).")] = None,
    modality: Annotated[str | None, typer.Option(
        help="audio, video or audiovisual for suites with several (default: the suite's, "
             "or what the model reads).")] = None,
    limit: Annotated[int | None, typer.Option(
        min=1, help="Only the first N items (by id), e.g. for a smoke run.")] = None,
    shard: Annotated[str | None, typer.Option(
        help="Run shard K/N of the items (K from 0). A later run without --shard in the same "
             "--out-dir merges the shards and scores the whole split.")] = None,
    out_dir: Annotated[Path | None, typer.Option(
        "--out-dir", "-o", help="Run directory (default: bench/SUITE-SPLIT[-MODALITY]-MODEL).")] = None,
    normalizer: Normalizer = None,
    beam_size: BeamSize = None, max_new_tokens: MaxNewTokens = None,
    no_speech_threshold: NoSpeechThreshold = None,
    language: Language = None,
    prompt: Prompt = None,
    batch_size: BatchSize = 0,
    device: Device = "auto",
    dtype: Dtype = "auto", quant: Quant = None, engine: Engine = "auto",
    encoder_window: EncoderWindow = "short",
    threads: Threads = 0, lora_scale: LoraScale = None, lora_gate: LoraGate = None,
    overwrite: Overwrite = False, progress: Progress = True,
    runner: Runner = "local", address: Address = None, workers: Workers = None, gpus: GpusPerWorker = None,
    check_batch_invariance: CheckInvariance = None, sweep: Sweep = None,
) -> None:
    """Run MODEL on a suite; write predictions, scores.json and Markdown/CSV tables.

    The table puts this run (metrics, RTFx, peak memory) beside the suite's published
    results. Resumable; sharded runs merge. Exit code 0 when every item was scored, 1 when
    some failed or are missing (the counts say which), 2 for usage errors.
    """
    from speechkit.commands.options import runtime_options, scale_options
    from speechkit.evaluation.bench import run_bench
    from speechkit.evaluation.sweep import run_sweep
    from speechkit.models.base import DecodeOptions

    runtime = runtime_options(device, dtype, quant, engine, threads, lora_scale, lora_gate=lora_gate,
                              encoder_window=encoder_window)
    decode = DecodeOptions(language=language, beam_size=beam_size, max_new_tokens=max_new_tokens,
                           prompt=prompt, no_speech_threshold=no_speech_threshold)
    _warn_unused(model, runtime, decode, batch_size or None)
    kw = dict(data_root=data_root, split=split, modality=modality, limit=limit, shard=shard,
              out_dir=out_dir, decode=decode, runtime=runtime, batch_size=batch_size or None,
              overwrite=overwrite, normalizer=normalizer, task=task, progress=progress,
              notify=_notify, console=err, scale=scale_options(runner, address, workers, gpus),
              check_invariance=check_batch_invariance)
    if sweep:  # one run per setting, one table
        raise typer.Exit(_draw_sweep(run_sweep(suite, model, sweep, **kw)))
    raise typer.Exit(_draw(run_bench(suite, model, **kw)))


def _warn_unused(model: str, runtime: object, decode: object, batch_size: int | None) -> None:
    from speechkit.cli import warn
    from speechkit.settings import unused_option_warnings

    for line in unused_option_warnings(model, runtime, decode, batch_size):
        warn(line)


def _notify(level: str, message: str) -> None:
    if level == "warning":
        err.print(f"[yellow]warning:[/] {safe(message)}", highlight=False, soft_wrap=True)
    else:
        err.print(plain(message))


def _draw(run: BenchRun) -> int:
    """The table (this run beside the published numbers), warnings and where the files are;
    returns the exit code (1: incomplete)."""
    from speechkit.commands.tables import rich_table

    out.print(rich_table(run.rows, title=f"{run.plan.what}: {run.system}"))
    for w in run.summary["warnings"]:
        _notify("warning", w)
    check = run.summary.get("batch_invariance")
    if check:
        for d in check["differences"]:
            err.print(plain(f"  {d['id']}: batched {d['batched']!r} / alone {d['alone']!r}"))
        if not check["differing"] and check["checked"]:
            err.print(plain(f"batch invariance: {check['checked']} item(s) decoded one at a time "
                            f"match the batch size {check['batch_size']} run"))
    tables = run.tables
    err.print(plain(f"scores: {run.plan.scores}; tables: {tables['markdown']}, {tables['csv']}"))
    if not run.summary["complete"]:
        err.print(Text.assemble(("incomplete: ", "bold yellow"), "; ".join(run.summary["incomplete"])))
    return 0 if run.summary["complete"] else 1


def _draw_sweep(sweep: SweepRun) -> int:
    """One table: a row per setting, every metric with its difference to the first row."""
    from speechkit.commands.tables import sweep_table

    title = f"{sweep.runs[0].plan.what}: {sweep.runs[0].system}, one row per setting"
    out.print(sweep_table(sweep.rows, title=title, machine=sweep.machine))
    for run in sweep.runs:
        for w in run.summary["warnings"]:
            _notify("warning", f"{run.plan.out_dir.name}: {w}")
    err.print(plain(f"sweep: {sweep.files['markdown']}, {sweep.files['csv']}, {sweep.files['json']}"))
    return 0 if all(r.complete for r in sweep.rows) else 1


def register(app: typer.Typer) -> None:
    app.command()(bench)
