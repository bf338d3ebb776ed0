"""`speechkit bench`: a suite's items -> model -> predictions JSONL -> scores.json + tables.

One run directory per suite run and model (`--out-dir`, default
`bench/SUITE-SPLIT[-MODALITY]-MODEL`):

- `predictions.jsonl`: one result line per item, resumable like `speechkit transcribe` (only
  lines of the same model and decode settings are reused; others stop the run).
  A sharded run (`--shard K/N`) writes `predictions.shard-K-of-N.jsonl` and scores its own
  part; a later unsharded run in the same directory takes in the shard files' finished
  lines first (refusing lines of another model or other settings), so it only decodes what
  no shard did, then scores the whole split. A run with nothing left to decode scores the
  existing lines without loading the model.
- `scores.json`: the scoring summary (metrics, item counts, problems) plus `run`, which
  records the model and its hash, decode settings, normalizer, sacreBLEU signature,
  selection, speed (RTFx, peak memory), speechkit version and date.
- `results.md` / `results.csv`: this run beside the suite's published numbers.

Nothing here prints: the run returns its records and tells `notify` what it decides; the CLI
(speechkit.commands.bench) draws them.
"""

from __future__ import annotations

import platform
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.console import Console

from speechkit import __version__, strict_json
from speechkit.data import Item, read_results
from speechkit.errors import SpeechkitError
from speechkit.evaluation.invariance import check_batch_invariance, invariance_warnings
from speechkit.evaluation.report import table_rows, write_tables
from speechkit.evaluation.scoring import score_predictions
from speechkit.evaluation.shards import absorb_shards, previous_speed, shard_speed
from speechkit.evaluation.suites import (
    Suite,
    load_suite,
    manifest_suite,
    parse_shard,
    resolve_data_root,
    suite_items,
)
from speechkit.models.base import AUDIO, VIDEO, DecodeOptions, SpeechModel
from speechkit.models.identity import ModelCard, model_card
from speechkit.models.registry import RuntimeOptions
from speechkit.results import ResultWriter
from speechkit.scale.options import ScaleOptions
from speechkit.settings import model_class, model_task
from speechkit.tasks import get_task
from speechkit.threads import available_cores, cpu_model

Notify = Callable[[str, str], None]  # (level: "info" | "warning", message)
SUITE_TRACKS = (("audio", {AUDIO}), ("video", {VIDEO}), ("audiovisual", {AUDIO, VIDEO}))


@dataclass
class BenchPlan:
    """What a bench run will do, settled before the model decodes anything."""

    suite: Suite
    split: str
    modality: str | None
    task: str  # the suite task being scored (asr, st, sv, ...)
    options: DecodeOptions  # what the model is asked to do
    items: list[Item]
    report: Any  # suites.BuildReport
    shard: tuple[int, int] | None
    out_dir: Path
    normalizer: str | None = None  # None: the suite's

    @property
    def stem(self) -> str:
        return f"shard-{self.shard[0]}-of-{self.shard[1]}" if self.shard else ""

    @property
    def what(self) -> str:
        """SUITE/SPLIT (MODALITY), as the run names itself."""
        return f"{self.suite.name}/{self.split}" + (f" ({self.modality})" if self.modality else "")

    @property
    def predictions(self) -> Path:
        return self.out_dir / (f"predictions.{self.stem}.jsonl" if self.shard else "predictions.jsonl")

    @property
    def scores(self) -> Path:
        return self.out_dir / (f"scores.{self.stem}.json" if self.shard else "scores.json")


def default_out_dir(suite: Suite, split: str, modality: str | None,
                    model: ModelCard | None = None) -> Path:
    """bench/SUITE-SPLIT[-MODALITY]-MODEL: runs of two models never share a directory."""
    return Path("bench") / "-".join(x for x in (suite.name, split, modality,
                                                model.slug if model else None) if x)


def resolve_suite(suite: str | Path | Suite, task: str | None = None) -> Suite:
    """A built-in suite name, a suite JSON file, or a JSONL manifest (with `task`)."""
    if isinstance(suite, Suite):
        return suite
    if str(suite).endswith(".jsonl"):
        return manifest_suite(suite, task)
    s = load_suite(suite)
    if task is not None and get_task(task).name not in (
            s.task, *(s.modalities[m].get("task") for m in s.modalities)):
        raise SpeechkitError(f"suite {s.name} is a {s.task} suite; --task {task} applies to "
                             "JSONL manifests only")
    return s


def model_modalities(model: SpeechModel | ModelCard) -> tuple[str, ...]:
    """Which suite tracks the model reads ("audio", "video", "audiovisual"), from its streams."""
    loaded = model.model if isinstance(model, ModelCard) and model.model is not None else model
    if isinstance(loaded, (SpeechModel, ModelCard)):  # its own streams: a speech LLM's encoders
        streams = frozenset(loaded.modalities)
    else:
        cls = model_class(model)
        streams = cls.modalities if cls is not None else frozenset({AUDIO})
    return tuple(track for track, need in SUITE_TRACKS if need <= streams)


def plan(suite_name: str | Path | Suite, model: SpeechModel | ModelCard, *,
         data_root: str | Path | None = None,
         split: str | None = None, modality: str | None = None, limit: int | None = None,
         shard: str | None = None, out_dir: str | Path | None = None,
         decode: DecodeOptions = DecodeOptions(), notify: Notify | None = None,
         built: tuple[list[Item], Any] | None = None) -> BenchPlan:
    """Resolve suite, split, modality, task and items for `model` (loaded or only known by
    its card); errors say what to change.

    `built`: the split's (items, report) from `suite_items` when the caller already has them;
    `notify(level, message)` hears which modality track was picked."""
    model = model_card(model)
    suite = resolve_suite(suite_name)
    split_name, split_opts = suite.split(split)
    task, prompt = suite.task, suite.prompt
    readable = model_modalities(model)
    if suite.modalities:
        if modality is None:
            modality = suite.default_modality if suite.default_modality in readable else None
            if modality is None:
                modality = next((m for m in suite.modalities if m in readable), None)
                if modality is None:
                    raise SpeechkitError(f"{model.name} reads {', '.join(readable)} only and suite "
                                         f"{suite.name} has modalities {', '.join(suite.modalities)}")
                (notify or _quiet)("info", f"{model.name} reads {', '.join(readable)} only: running "
                                   f"the {modality} track of {suite.name} (--modality to choose)")
        if modality not in suite.modalities:
            raise SpeechkitError(f"suite {suite.name} has no modality {modality!r}; choose one of: "
                                 f"{', '.join(suite.modalities)}")
        if modality not in readable:
            raise SpeechkitError(f"{model.name} cannot read the {modality} track of {suite.name} "
                                 f"(it reads {', '.join(readable)}); pass --modality "
                                 f"{readable[0]} or a model with a video encoder")
        task = suite.modalities[modality].get("task", task)
        prompt = suite.modalities[modality].get("prompt", prompt)
    elif modality is not None:
        raise SpeechkitError(f"suite {suite.name} has one modality: drop --modality")

    source = split_opts.get("source_language") or suite.language
    target = split_opts.get("target_language")
    uses = cls.uses if (cls := model_class(model)) is not None else frozenset({"language",
                                                                               "target_language"})
    options = replace(  # languages only where the model reads them (results record them)
        decode, task=model_task(model, model.name, task, target, f"{suite.name}/{split_name}"),
        language=(decode.language or source) if "language" in uses else None,
        target_language=(decode.target_language or target) if "target_language" in uses else None)

    items, report = built or suite_items(suite, data_root, split_name, limit=limit, shard=shard)
    for it in items:
        if prompt and (it.prompt is None or it.prompt == suite.prompt):
            it.prompt = prompt
    out = Path(out_dir) if out_dir else default_out_dir(suite, split_name, modality, model)
    return BenchPlan(suite, split_name, modality, task, options, items, report,
                     parse_shard(shard), out)


def _selected_records(plan_: BenchPlan) -> list[dict[str, Any]]:
    wanted = {it.id for it in plan_.items}
    results = read_results(plan_.predictions) if plan_.predictions.exists() else {}
    return [r.to_dict() for i, r in results.items() if i in wanted]


def score_plan(plan_: BenchPlan, model: SpeechModel | ModelCard | None, run_summary: Any,
               runtime: RuntimeOptions, batch_size: int | None,
               invariance: dict[str, Any] | None = None) -> dict[str, Any]:
    """Score this run's items, add the run record (and the batch-invariance check, when one
    ran) and write scores.json."""
    suite = plan_.suite
    split_opts = suite.splits[plan_.split]
    records = _selected_records(plan_)
    card = model_card(model) if model is not None else None
    if card is None or card.model is not None:
        model_record = card.describe() if card else None
    else:  # nothing was decoded: the full record the lines carry, else the identity
        model_record = next((r["model"] for r in records if r.get("model")), card.describe())
    summary = score_predictions(
        records, task=plan_.task, suite=suite, expected=plan_.items,
        labels=suite.labels, target_language=split_opts.get("target_language"),
        normalizer=plan_.normalizer)
    summary["source"] = str(plan_.predictions)
    report = plan_.report
    summary["counts"]["protocol_items"] = report.expected
    summary["counts"]["found_on_disk"] = report.found
    summary["counts"]["missing_media"] = len(report.missing)
    if not report.complete:
        summary["complete"] = False
        summary["incomplete"] = [*_build_shortfall(report), *summary["incomplete"]]
        summary["warnings"] = [*report.warnings, *summary["warnings"]]
    summary["run"] = {
        "suite": suite.name,
        "split": plan_.split,
        "modality": plan_.modality,
        "task": plan_.task,
        "model": model_record,
        "decode": plan_.options.to_dict(),
        "normalizer": summary.get("normalizer"),
        "sacrebleu_signature": {k: v for k, v in summary.get("details", {}).items()
                                if k.endswith("_signature")} or None,
        "selection": plan_.report.selection,
        "build": plan_.report.to_dict(),
        "runtime": used_runtime(run_summary, records, runtime, batch_size),
        "speed": run_speed(plan_, run_summary),
        "speechkit_version": __version__,
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if invariance is not None:
        summary["batch_invariance"] = invariance
        summary["warnings"] = [*summary["warnings"], *invariance_warnings(invariance)]
    strict_json.write_json(plan_.scores, summary)
    return summary


def run_speed(plan_: BenchPlan, run_summary: Any) -> dict[str, Any] | None:
    """This run's speed (RTFx, peak memory, the machine); when it decoded nothing, the
    figures of the runs that did the work."""
    if run_summary is None or run_summary.audio_s <= 0:
        return previous_speed(plan_.scores) or shard_speed(plan_)
    settings = run_summary.settings or {}
    return {"audio_s": round(run_summary.audio_s, 3), "wall_s": round(run_summary.wall_s, 3),
            "rtfx": round(run_summary.rtfx, 3), "load_s": round(run_summary.load_s, 3),
            "peak_rss_mb": round(run_summary.peak_rss_mb, 1),
            "peak_gpu_mb": None if run_summary.peak_gpu_mb is None
            else round(run_summary.peak_gpu_mb, 1),
            "items_decoded": run_summary.ok + run_summary.failed,
            "machine": machine(settings.get("threads"), settings.get("device"))}


def machine(threads: int | None = None, device: str | None = None) -> dict[str, Any]:
    """The machine a run's speed was measured on: the CPU's model name, the cores this process
    may use, the math threads the model ran with (None when it does not say) and, on a GPU
    run, the GPU's name."""
    out: dict[str, Any] = {"cpu": cpu_model(), "cores": available_cores(), "threads": threads}
    if device and str(device).startswith("cuda"):
        import torch

        out["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return out


def machine_label(m: dict[str, Any] | None) -> str | None:
    """"AMD EPYC (2 cores, 2 threads)", with "; GPU name" on a GPU run, for the speed rows."""
    if not m:
        return None
    threads = f", {m['threads']} threads" if m.get("threads") else ""
    gpu = f"; {m['gpu']}" if m.get("gpu") else ""
    return f"{m.get('cpu')} ({m.get('cores')} cores{threads}){gpu}"


def used_runtime(run_summary: Any, records: list[dict[str, Any]], runtime: RuntimeOptions,
                 batch_size: int | None) -> dict[str, Any]:
    """The settings the model actually ran with (device, dtype, quant, batch size, beam): this
    run's, else those its result lines recorded; the requested ones only if neither is known."""
    if run_summary is not None and getattr(run_summary, "settings", None):
        return dict(run_summary.settings)
    recorded = next((r["model"]["runtime"] for r in records
                     if isinstance(r.get("model"), dict) and r["model"].get("runtime")), None)
    if recorded:
        return dict(recorded)
    return {"device": None, "dtype": runtime.dtype, "quant": runtime.quant, "batch_size": batch_size}


def _build_shortfall(report: Any) -> list[str]:
    """Why the items on disk fall short of the suite's protocol, as incomplete reasons."""
    out = []
    if report.missing:
        out.append(f"{len(report.missing)} item(s) have no media file under the data root")
    if report.expected is not None and report.found != report.expected:
        out.append(f"found {report.found} of the protocol's {report.expected} items")
    return out


def result_rows(plan_: BenchPlan, summary: dict[str, Any], system: str) -> list[dict[str, Any]]:
    """Table rows: this run's metrics and speed, then the published rows."""
    rows = table_rows(summary, plan_.suite, plan_.split, system=system, modality=plan_.modality,
                      metrics=plan_.suite.metrics or list(summary["metrics"]))
    counts, report = summary["counts"], plan_.report
    if report.expected is not None:  # items against the protocol's count, not just the found ones
        label = f"{counts['scored']}/{report.expected}"
        if report.selection:
            label = f"{counts['scored']}/{len(plan_.items)} ({report.selection} of {report.expected})"
        for r in rows:
            if r["source"] == "this run" or str(r["source"]).startswith("not run"):
                r["items"] = label
    speed = summary["run"].get("speed") or {}
    ours = [r for r in rows if r["source"] == "this run" or r["source"].startswith("not run")]
    rest = rows[len(ours):]
    base = dict(ours[0]) if ours else {"system": system, "split": plan_.split,
                                       "modality": plan_.modality, "source": "this run"}
    extra = []
    where = machine_label(speed.get("machine"))
    for key, metric in (("rtfx", "rtfx"), ("peak_rss_mb", "peak_rss_mb"),
                        ("peak_gpu_mb", "peak_gpu_mb")):
        if speed.get(key) is not None:
            extra.append(base | {"metric": metric, "value": speed[key], "normalizer": None,
                                 "source": "this run"} | ({"machine": where} if where else {}))
    return ours + extra + rest


@dataclass
class BenchRun:
    """What a bench run did: its plan, the scores summary (also in scores.json), the table rows
    (this run beside the published ones) and the table files written."""

    plan: BenchPlan
    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    tables: dict[str, Path]
    system: str  # the model's name in the table


def _quiet(level: str, message: str) -> None:
    """The default `notify`: a library run says nothing."""


def run_bench(suite_name: str | Path | Suite,
              model_name: str | SpeechModel | ModelCard = "whisper-base", *,
              data_root: str | Path | None = None, split: str | None = None,
              modality: str | None = None, limit: int | None = None, shard: str | None = None,
              out_dir: str | Path | None = None, decode: DecodeOptions = DecodeOptions(),
              runtime: RuntimeOptions = RuntimeOptions(), batch_size: int | None = None,
              overwrite: bool = False, progress: bool = True, normalizer: str | None = None,
              task: str | None = None, notify: Notify = _quiet,
              console: Console | None = None, scale: ScaleOptions = ScaleOptions(),
              check_invariance: int | None = None) -> BenchRun:
    """The whole `speechkit bench` run: predictions, scores.json and the tables.

    `notify(level, message)` hears what the run decides ("info", "warning"); `console` is
    where the runner draws its progress and failures (speechkit.transcribe); `scale` runs the
    items in this process or on a Ray cluster; `check_invariance` N decodes N sampled items
    again one at a time and records every one whose text differs (speechkit.evaluation.invariance)."""
    from speechkit.transcribe import transcribe_to_jsonl

    suite = resolve_suite(suite_name, task)
    resolve_data_root(suite, data_root)  # fail before the model loads
    split_name, split_opts = suite.split(split)
    if not suite.modalities:  # the model's task, known from what it is: before it loads
        name = getattr(model_name, "name", str(model_name))
        model_task(model_name, name, suite.task, split_opts.get("target_language"),
                   f"{suite.name}/{split_name}")
    built = suite_items(suite, data_root, split_name, limit=limit, shard=shard)  # layout, --shard
    model = model_card(model_name, runtime)  # its identity; the weights load only if needed
    p = plan(suite, model, data_root=data_root, split=split, modality=modality, limit=limit,
             shard=shard, out_dir=out_dir, decode=decode, notify=notify, built=built)
    p.normalizer = normalizer
    p.options = model.resolve(p.options)
    for w in p.report.warnings:
        notify("warning", w)
    p.out_dir.mkdir(parents=True, exist_ok=True)
    with ResultWriter(p.predictions, overwrite=overwrite) as writer:
        writer.check_reuse([it.id for it in p.items], model.identity, p.options.to_dict())
        if not overwrite and (n := absorb_shards(p, writer, model.identity)):
            notify("info", f"took {n} finished item(s) from the shard files in {p.out_dir}")
        sel = f", {p.report.selection}" if p.report.selection else ""
        notify("info", f"{p.what}: {len(p.items)} item(s){sel} -> {p.predictions}")
        summary_run = transcribe_to_jsonl(p.items, model, p.options, writer, runtime=runtime,
                                          batch_size=batch_size, console=console,
                                          progress=progress, label="benchmarking",
                                          title=f"speechkit bench {p.what}", scale=scale)
    check = None if not check_invariance else check_batch_invariance(
        p.predictions, p.items, model, p.options, check_invariance, runtime=runtime,
        console=console, progress=progress)
    summary = score_plan(p, model, summary_run, runtime, batch_size, check)
    rows = result_rows(p, summary, system=model.name)
    paths = write_tables(rows, p.out_dir, stem=f"results.{p.stem}" if p.shard else "results")
    return BenchRun(p, summary, rows, paths, model.name)
