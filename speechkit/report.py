"""Tables: this run's scores beside the published numbers, as rich, Markdown and CSV.

Rows are plain dicts with the columns in `COLUMNS`; a run contributes one row per metric
and the suite's published results follow with their sources, so a reader sees at once
which protocol, normalizer and item count stand behind each number.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from speechkit.terminal import PlainTable, plain, safe

COLUMNS = ("system", "split", "modality", "metric", "value", "items", "normalizer", "source")


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def table_rows(
    summary: Mapping[str, Any],
    suite: Any = None,
    split: str | None = None,
    system: str = "this run",
    modality: str | None = None,
    metrics: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows for one scored run, then the suite's published rows for the same split."""
    counts = summary.get("counts", {})
    expected = counts.get("expected")
    items = (
        f"{counts.get('scored')}/{expected}"
        if expected is not None
        else str(counts.get("scored", ""))
    )
    wanted = list(metrics or (suite.metrics if suite is not None else summary.get("metrics", {})))
    rows = []
    for m in wanted:
        value = summary.get("metrics", {}).get(m)
        not_run = summary.get("details", {}).get("not_run", {}).get(m)
        if value is None and not_run is None and suite is None:
            continue
        rows.append(
            {
                "system": system,
                "split": split,
                "modality": modality,
                "metric": m,
                "value": value,
                "items": items,
                "normalizer": summary.get("normalizer"),
                "source": f"not run: {not_run}" if not_run else "this run",
            }
        )
    if suite is not None:
        for p in suite.published_rows(split, modality):
            rows.append(
                {
                    "system": p["system"],
                    "split": p.get("split"),
                    "modality": p.get("modality"),
                    "metric": p["metric"],
                    "value": p["value"],
                    "items": p.get("items"),
                    "normalizer": p.get("normalizer", suite.normalizer),
                    "source": p["source"],
                }
            )
    return rows


def _present_columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    return [c for c in COLUMNS if any(r.get(c) not in (None, "") for r in rows)]


def rich_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A rich Table of the rows (empty columns left out)."""
    cols = _present_columns(rows)
    table = PlainTable(title=title, show_lines=False)
    for c in cols:
        table.add_column(
            c,
            justify="right" if c == "value" else "left",
            overflow="fold",
            max_width=60 if c == "source" else None,
        )
    for r in rows:
        style = "bold" if r.get("source") == "this run" else None
        table.add_row(*(_fmt(r.get(c)) for c in cols), style=style)
    return table


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub Markdown table of the rows."""
    cols = _present_columns(rows)
    esc = lambda s: s.replace("|", "\\|")  # noqa: E731
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if c == "value" else "---" for c in cols) + "|",
    ]
    lines += ["| " + " | ".join(esc(_fmt(r.get(c))) for c in cols) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def csv_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of the rows with every column (values unformatted)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(COLUMNS), extrasaction="ignore")
    writer.writeheader()
    for r in rows:
        writer.writerow({c: "" if r.get(c) is None else r.get(c) for c in COLUMNS})
    return buf.getvalue()


def write_tables(
    rows: Sequence[Mapping[str, Any]], out_dir: str | Path, stem: str = "results"
) -> dict[str, Path]:
    """Write OUT_DIR/STEM.md and OUT_DIR/STEM.csv; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"markdown": out / f"{stem}.md", "csv": out / f"{stem}.csv"}
    paths["markdown"].write_text(markdown_table(rows), encoding="utf-8")
    paths["csv"].write_text(csv_table(rows), encoding="utf-8")
    return paths


def compare_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A rich Table of `speechkit.compare.compare_scores` rows, regressions in red."""
    table = Table(title=None if title is None else plain(title))
    for c in ("metric", "baseline", "new", "delta", "better", "allowed", "status"):
        table.add_column(
            c, justify="right" if c in ("baseline", "new", "delta", "allowed") else "left"
        )
    for r in rows:
        status = "[red]REGRESSED[/]" if r["regressed"] else "ok"
        if r.get("note") and not r["regressed"]:
            status = f"ok ({safe(r['note'])})" if r["baseline"] is not None else safe(r["note"])
        elif r["regressed"]:
            status = f"[red]REGRESSED[/] {safe(r.get('note', ''))}"
        delta = r["delta"]
        table.add_row(
            plain(r["metric"]),
            _fmt(r["baseline"]),
            _fmt(r["new"]),
            "-" if delta is None else f"{delta:+.4g}",
            r["direction"],
            _fmt(r["threshold"]),
            status,
        )
    return table
