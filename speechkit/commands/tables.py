"""Terminal tables: a bench run beside the published numbers, and a compare gate.

The run table fits an 80-column CI log: published rows show a short system name and citation
tag (`Radford+22`), and columns that hold one value for every row move under the table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table
from rich.text import Text

from speechkit.evaluation.report import format_value, present_columns, results_frame

# Terminal-table columns that move under the table when every row has the same value (the
# machine is only on the speed rows: RTFx and peak memory).
SHARED_COLUMNS = ("split", "modality", "normalizer", "machine")


def _table(title: str | None, caption: str | None = None) -> Table:
    """A borderless table for terminals and CI logs; title and caption are plain text."""
    return Table(title=Text(title) if title else None, caption=Text(caption) if caption else None,
                 box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)


def rich_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A rich Table of the rows for a terminal or CI log (80 columns and up).

    Published rows show `system_short` and `cite` where the suite gives them; split,
    modality and normalizer go under the table when every row shares one value.
    """
    cols = present_columns(results_frame(rows))
    shared = {}
    for c in SHARED_COLUMNS:
        values = {r.get(c) for r in rows if r.get(c) not in (None, "")}
        if c in cols and len(values) == 1:
            shared[c] = values.pop()
            cols.remove(c)
    caption = ", ".join(f"{c} {v}" for c, v in shared.items()) or None
    table = _table(title, caption)
    for c in cols:
        table.add_column(c, justify="right" if c == "value" else "left", overflow="fold")
    for r in rows:
        cells = {c: format_value(r.get(c)) for c in cols}
        if r.get("system_short"):
            cells["system"] = str(r["system_short"])
        if r.get("cite") and "source" in cells:
            cells["source"] = str(r["cite"])
        style = "bold" if r.get("source") == "this run" else None
        table.add_row(*(Text(cells[c]) for c in cols), style=style)
    return table


def sweep_table(rows: Sequence[Any], title: str | None = None,
                machine: str | None = None) -> Table:
    """A rich Table of `speechkit.evaluation.sweep` rows: a row per setting, each value with
    its difference to the first row."""
    from speechkit.evaluation.sweep import cell, columns, table_records

    cols, keys = columns(list(rows)), list(rows[0].values) if rows else []
    table = _table(title, f"speed on {machine}" if machine else None)
    for k in keys:  # one column per swept setting
        table.add_column(k, overflow="fold")
    for c in cols:
        table.add_column(c, justify="right", overflow="fold")
    for i, rec in enumerate(table_records(list(rows))):
        table.add_row(*(Text(str(rec[k])) for k in keys),
                      *(Text(cell(rec[c], rec[f"{c}_delta"], i == 0)) for c in cols))
    return table


def compare_table(rows: Sequence[Mapping[str, Any]], title: str | None = None) -> Table:
    """A rich Table of `speechkit.evaluation.compare.compare_scores` rows, regressions in red."""
    table = _table(title)
    for c in ("metric", "baseline", "new", "delta", "better", "allowed", "status"):
        table.add_column(
            c, justify="right" if c in ("baseline", "new", "delta", "allowed") else "left",
            overflow="fold",
        )
    for r in rows:
        if r["regressed"]:
            status = Text.assemble(("REGRESSED", "red"), f" {r.get('note', '')}".rstrip())
        elif r.get("note"):
            status = Text(f"ok ({r['note']})" if r["baseline"] is not None else r["note"])
        else:
            status = Text("ok")
        delta = r["delta"]
        table.add_row(
            Text(str(r["metric"])),
            Text(format_value(r["baseline"])),
            Text(format_value(r["new"])),
            "-" if delta is None else f"{delta:+.4g}",
            r["direction"],
            format_value(r["threshold"]),
            status,
        )
    return table
