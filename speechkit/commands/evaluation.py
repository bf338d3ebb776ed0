"""Evaluation commands: `score`, `compare` and `manifest` (the library does the work)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from speechkit.commands.options import Normalizer
from speechkit.errors import SpeechkitError
from speechkit.tasks import TASKS
from speechkit.terminal import safe

out = Console()
err = Console(stderr=True)


Predictions = Annotated[Path, typer.Argument(
    help="Predictions JSONL: speechkit results, NeMo output manifests, or any lines with "
    "text/reference (or pred_text, prediction, hypothesis) fields.", show_default=False)]
ScoreTask = Annotated[str | None, typer.Option(
    "--task", "-t", help=f"{', '.join(TASKS)} (default: the suite's, or the lines' own `task`).")]
SuiteName = Annotated[str | None, typer.Option(
    help="Suite name or JSON: takes its task, normalizer and labels.")]
Expected = Annotated[Path | None, typer.Option(
    "--expected", "--manifest", help="Manifest JSONL of the items that should be there: "
    "counts missing ones and supplies references/labels the lines lack.")]
TargetLanguage = Annotated[str | None, typer.Option(
    help="ST target language (picks the sacreBLEU tokenizer).")]
Java = Annotated[bool, typer.Option(help="AAC: run the Java metrics (METEOR, SPICE) when Java is there.")]
SummaryOut = Annotated[Path | None, typer.Option("--out", "-o", help="Write the full summary JSON here.")]
PerItem = Annotated[Path | None, typer.Option(help="ASR: write per-utterance edit counts to this JSONL.")]
JsonOut = Annotated[bool, typer.Option(
    "--json", help="Print the full summary as JSON instead of the short one.")]


def score(predictions: Predictions, task: ScoreTask = None, normalizer: Normalizer = None,
          suite: SuiteName = None, expected: Expected = None, target_language: TargetLanguage = None,
          java: Java = True, out_path: SummaryOut = None, per_item: PerItem = None,
          json_out: JsonOut = False) -> None:
    """Score a predictions file: print its metrics, item counts and normalizer.

    Exit code 0 when every expected item was scored, 1 when the run is incomplete (items
    missing, errored or unusable, an empty file, every reference empty: the summary says
    which), 2 for usage errors.
    """
    from speechkit.evaluation.scoring import score_predictions
    from speechkit.evaluation.suites import load_suite

    s = load_suite(suite) if suite else None
    summary = score_predictions(
        predictions,
        task=task,
        normalizer=normalizer,
        expected=expected,
        suite=s,
        labels=s.labels if s else None,
        target_language=target_language,
        use_java=None if java else False,
        per_item=per_item is not None,
    )
    _write_score(summary, per_item, out_path, json_out)
    raise typer.Exit(0 if summary["complete"] else 1)


def _write_score(summary: dict, per_item: Path | None, out_path: Path | None, json_out: bool) -> None:
    """The per-item file, the summary JSON and the printed summary and warnings."""
    from speechkit import strict_json
    from speechkit.data import dumps_line
    from speechkit.evaluation.report import score_lines

    per = summary.pop("per_item", None)
    if per_item is not None:
        per_item.parent.mkdir(parents=True, exist_ok=True)
        with open(per_item, "w", encoding="utf-8") as fh:
            fh.writelines(dumps_line(row) for row in per or [])
    if out_path is not None:
        strict_json.write_json(out_path, summary)
    if json_out:
        print(strict_json.dumps(summary, indent=2))
    else:
        print("\n".join(score_lines(summary)))
    for w in summary["warnings"]:  # ids and file names are the user's text, never markup
        err.print(Text.assemble(("warning: ", "yellow"), w), highlight=False, soft_wrap=True)


def compare(
    baseline: Annotated[Path, typer.Argument(help="Baseline scores JSON.", show_default=False)],
    new: Annotated[Path, typer.Argument(help="New scores JSON.", show_default=False)],
    max_regression: Annotated[
        list[str] | None,
        typer.Option(
            "--max-regression",
            "-r",
            help="Allowed worsening in metric units: one number for every metric, or METRIC=N "
            "(repeatable; only named metrics are gated, `*=N` for the rest).",
        ),
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print rows as JSON.")] = False,
) -> None:
    """Compare two score files; exit 1 when a metric regressed past its threshold.

    Direction-aware: WER, CER, EER and minDCF must not rise; BLEU, chrF, accuracies, F1 and
    captioning metrics must not fall. A metric missing from NEW, or fewer items scored, fails.
    """
    from speechkit import strict_json
    from speechkit.commands.tables import compare_table
    from speechkit.evaluation.compare import any_regressed, compare_scores, load_scores, parse_thresholds

    rows = compare_scores(load_scores(baseline), load_scores(new), parse_thresholds(max_regression))
    if json_out:
        print(strict_json.dumps(rows, indent=2))
    else:
        out.print(compare_table(rows, title=f"{baseline.name} -> {new.name}"))
    for r in rows:
        if r["regressed"]:
            err.print(Text.assemble(("regression: ", "bold red"), f"{r['metric']}: {r['note']}"))
    raise typer.Exit(1 if any_regressed(rows) else 0)


def manifest(
    suite: Annotated[
        str, typer.Argument(help="Suite name (see --list) or suite JSON path.", show_default=False)
    ] = "",
    data_root: Annotated[
        Path | None,
        typer.Option(
            help="Dataset root in its standard layout (librivox-mini finds pocketsphinx-testdata "
            "itself)."
        ),
    ] = None,
    split: Annotated[str | None, typer.Option(help="Split (default: the suite's).")] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", "-o", help="Manifest JSONL to write.")
    ] = None,
    list_suites: Annotated[bool, typer.Option("--list", help="List the built-in suites.")] = False,
) -> None:
    """Build a suite's item list (JSONL manifest) from the dataset's layout on disk.

    Reports missing media (listed in OUT.missing.txt) and count mismatches against the
    protocol; exit code 1 when the manifest is incomplete.
    """
    from speechkit import strict_json
    from speechkit.evaluation.suites import build_manifest, load_suite, suite_names

    if list_suites or not suite:
        for name in suite_names():
            s = load_suite(name)
            splits = ", ".join(f"{k} ({v.get('expected_items', '?')})" for k, v in s.splits.items())
            out.print(f"[bold]{name}[/]  {s.task}  {splits}", highlight=False)
        raise typer.Exit(0)
    if out_path is None:
        raise SpeechkitError("say where to write the manifest: --out FILE.jsonl")
    report = build_manifest(suite, data_root, split, out_path)
    for w in report.warnings:
        err.print(f"[yellow]warning:[/] {safe(w)}", highlight=False, soft_wrap=True)
    print(strict_json.dumps(report.to_dict() | {"out": str(out_path)}, indent=2))
    sys.stdout.flush()
    raise typer.Exit(0 if report.complete else 1)


def register(app: typer.Typer) -> None:
    """Add the evaluation commands to the main app."""
    app.command()(score)
    app.command()(compare)
    app.command()(manifest)
