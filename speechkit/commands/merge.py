"""`speechkit merge`: combine shard outputs into one results file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from speechkit.terminal import plain

err = Console(stderr=True)
SHOWN_IDS = 10  # ids listed per problem line; the counts say how many there are


def merge(
    out: Annotated[Path, typer.Argument(help="The merged results JSONL to write.", show_default=False)],
    shards: Annotated[list[Path], typer.Argument(
        help="The shards' results JSONL files (e.g. one per `--shard K/N` run).", show_default=False)],
    manifest: Annotated[list[str] | None, typer.Option(
        "--manifest", help="The inputs the shards were cut from (a manifest, folder or glob, as "
        "given to transcribe; repeat for several): their ids without a line are reported "
        "missing.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace OUT when it exists.")] = False,
) -> None:
    """Merge shard outputs into one file (one line per id), reporting duplicate and missing ids.

    An "ok" line wins over an error line for the same id; otherwise the shard given last wins.
    Exit code 0 when every expected id has an "ok" line, 1 when some are missing or failed.
    """
    from speechkit.inputs import expand_inputs
    from speechkit.merge import merge_results

    expected = expand_inputs(manifest) if manifest else None
    report = merge_results(out, shards, expected, overwrite=overwrite)
    t = Table(title="speechkit merge", show_header=False, title_justify="left")
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_row("shard files", str(len(report.lines)))
    t.add_row("lines read", str(sum(report.lines.values())))
    t.add_row("ids written", str(report.written))
    t.add_row("duplicate ids", f"{len(report.duplicates)} ({len(report.differing)} differing)")
    t.add_row("failed ids", str(len(report.failed)))
    if expected is not None:
        t.add_row("missing ids", str(len(report.missing)))
    t.add_row("results", plain(str(report.out)))
    err.print(t)
    for label, ids in (("duplicate", list(report.duplicates)), ("missing", report.missing),
                       ("failed", report.failed), ("not in the manifest", report.unexpected)):
        if ids:
            more = f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else ""
            err.print(plain(f"{label}: {', '.join(ids[:SHOWN_IDS])}{more}"), highlight=False,
                      soft_wrap=True)
    raise typer.Exit(0 if report.complete else 1)


def register(app: typer.Typer) -> None:
    app.command()(merge)
