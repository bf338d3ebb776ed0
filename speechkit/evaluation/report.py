"""Tables: this run's scores beside the published numbers, as rows, Markdown and CSV.

Rows are plain dicts with the columns in `COLUMNS`; a run contributes one row per metric
and the suite's published results follow with their sources, so a reader sees at once
which protocol, normalizer and item count stand behind each number. The terminal table
(speechkit.commands.tables) shows short names and citation tags; the full system names,
citations and links stay in the Markdown and CSV files.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from speechkit.evaluation.scoring import COUNT_LABELS

# `machine`: the CPU (model, cores, threads) beside a run's speed rows, so RTFx compares.
COLUMNS = ("system", "split", "modality", "metric", "value", "items", "normalizer", "source",
           "machine")
CITE_WIDTH = 24  # characters of a source without a `cite` tag kept in the terminal table


def format_value(value: Any) -> str:
    """A value as the tables show it: 4 significant digits below 1, else 2 decimals."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        return f"{value:.4g}" if abs(value) < 1 else f"{value:.2f}"
    return str(value)


def short_source(source: str) -> str:
    """A short tag for a citation without one: its first clause, cut at a word."""
    head = source.split(",")[0].strip()
    if len(head) <= CITE_WIDTH:
        return head
    return head[:CITE_WIDTH].rsplit(" ", 1)[0] + "..."


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
                    "cite": p.get("cite") or short_source(p["source"]),
                    "system_short": p.get("system_short"),
                }
            )
    return rows


def results_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame with every column of `COLUMNS` (values as they are: objects)."""
    return pd.DataFrame(list(rows), columns=list(COLUMNS), dtype=object)


def present_columns(frame: pd.DataFrame) -> list[str]:
    """The columns where some row has a value."""
    return [c for c in COLUMNS if frame[c].map(lambda v: v not in (None, "")).any()]


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A GitHub Markdown table of the rows."""
    frame = results_frame(rows)
    cols = present_columns(frame)
    cells = frame[cols].map(lambda v: format_value(v).replace("|", "\\|"))
    lines = [
        "| " + " | ".join(cols) + " |",
        "|" + "|".join("---:" if c == "value" else "---" for c in cols) + "|",
    ]
    lines += ["| " + " | ".join(row) + " |" for row in cells.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def csv_table(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV text of the rows with every column (values unformatted)."""
    return results_frame(list(rows)).to_csv(index=False, na_rep="", lineterminator="\r\n")


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


def score_lines(summary: Mapping[str, Any]) -> list[str]:
    """A short human summary of `speechkit.evaluation.scoring.score_predictions`: metrics, items, status."""
    c, metrics = summary["counts"], summary["metrics"]
    not_run = summary.get("details", {}).get("not_run", {})
    pairs = [("task", summary["task"]), ("normalizer", summary.get("normalizer") or "none")]
    pairs += [(m, format_value(v)) for m, v in metrics.items()]
    pairs += [(m, f"not run: {why}") for m, why in not_run.items() if m not in metrics]
    total = c["expected"] if c["expected"] is not None else c["predictions"]
    of = "expected" if c["expected"] is not None else "predictions"
    extra = [f"{c[k]} {label}" for k, label in COUNT_LABELS.items() if c.get(k)]
    pairs.append(("items", f"{c['scored']} scored of {total} {of}"
                  + (f"; {', '.join(extra)}" if extra else "")))
    incomplete = summary.get("incomplete") or []
    status = "complete" if summary["complete"] else "incomplete"
    pairs.append(("status", status + (f": {'; '.join(incomplete)}" if incomplete else "")))
    width = max(len(k) for k, _ in pairs) + 2
    return [f"{k:<{width}}{v}" for k, v in pairs]

