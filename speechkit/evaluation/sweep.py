"""`speechkit bench SUITE --sweep KEY=V1,V2 ...`: one bench run per setting, one table.

Every combination of the swept values is a bench run in its own sub-directory of the sweep
directory (`dtype-int8_beam-1/`), so a sweep resumes like a bench run: finished settings
score again without loading the model. The table has a row per setting with every metric of
the suite, RTFx and peak memory, each with its difference to the first row: the accuracy
and speed cost of int8, 4-bit, a smaller beam, a bigger batch. `sweep.json`, `sweep.md` and
`sweep.csv` keep it beside the runs.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.evaluation.report import format_value

# KEY -> (where it goes, field, parse): what --sweep can vary.
SWEEP_KEYS: dict[str, tuple[str, str, Callable[[str], Any]]] = {
    "dtype": ("runtime", "dtype", str),
    "quant": ("runtime", "quant", lambda v: None if v.lower() in ("none", "off") else v),
    "engine": ("runtime", "engine", str),
    "encoder_window": ("runtime", "encoder_window", str),
    "device": ("runtime", "device", str),
    "threads": ("runtime", "threads", int),
    "beam": ("decode", "beam_size", int),
    "beam_size": ("decode", "beam_size", int),
    "max_new_tokens": ("decode", "max_new_tokens", int),
    "no_speech_threshold": ("decode", "no_speech_threshold", float),
    "batch": ("batch", "batch_size", int),
    "batch_size": ("batch", "batch_size", int),
}
SPEED_COLUMNS = ("rtfx", "peak_rss_mb", "peak_gpu_mb")


def parse_sweep(specs: list[str]) -> list[dict[str, str]]:
    """`["dtype=int8,float32", "beam=1,5"]` -> every combination, in the order given:
    [{"dtype": "int8", "beam": "1"}, {"dtype": "int8", "beam": "5"}, ...]."""
    axes: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip().lower().replace("-", "_")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not vals:
            raise SpeechkitError(f"--sweep {spec!r}: use KEY=V1,V2, e.g. --sweep dtype=int8,float32")
        if key not in SWEEP_KEYS:
            raise SpeechkitError(f"--sweep {key}: not a setting a sweep can vary; use one of "
                                 f"{', '.join(SWEEP_KEYS)}")
        if key in axes:
            raise SpeechkitError(f"--sweep {key} is given twice: list all its values in one --sweep")
        axes[key] = list(dict.fromkeys(vals))
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def setting_label(values: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in values.items())


def setting_dir(values: dict[str, str]) -> str:
    """A sub-directory name for a setting: dtype-int8_beam-1."""
    return "_".join(f"{k}-{v}".replace("/", "-") for k, v in values.items())


def apply_setting(values: dict[str, str], decode: Any, runtime: Any,
                  batch_size: int | None) -> tuple[Any, Any, int | None]:
    """The decode options, runtime options and batch size with the setting's values in."""
    for key, raw in values.items():
        where, field, parse = SWEEP_KEYS[key]
        try:
            value = parse(raw)
        except ValueError:
            raise SpeechkitError(f"--sweep {key}={raw}: not a valid {key}") from None
        if where == "decode":
            decode = replace(decode, **{field: value})
        elif where == "runtime":
            runtime = replace(runtime, **{field: value})
        else:
            batch_size = value
    return decode, runtime, batch_size


@dataclass
class SweepRow:
    """One setting's outcome: its label, run directory, metrics and speed."""

    setting: str
    out_dir: Path
    metrics: dict[str, float | None]
    complete: bool
    values: dict[str, str] = field(default_factory=dict)  # the swept keys and their values


def sweep_row(values: dict[str, str], run: Any, metrics: list[str]) -> SweepRow:
    speed = run.summary["run"].get("speed") or {}
    got = {m: run.summary["metrics"].get(m) for m in metrics}
    got |= {k: speed.get(k) for k in SPEED_COLUMNS}
    return SweepRow(setting_label(values), run.plan.out_dir, got, bool(run.summary["complete"]),
                    dict(values))


def columns(rows: list[SweepRow]) -> list[str]:
    """The metrics some row has a value for, in the first row's order."""
    names = list(rows[0].metrics) if rows else []
    return [c for c in names if any(r.metrics.get(c) is not None for r in rows)]


def table_records(rows: list[SweepRow]) -> list[dict[str, Any]]:
    """Rows as plain records: setting, then each column's value and its difference to the
    first row (`<column>_delta`)."""
    cols, out = columns(rows), []
    for r in rows:
        rec: dict[str, Any] = {"setting": r.setting, **r.values, "complete": r.complete}
        for c in cols:
            v, first = r.metrics.get(c), rows[0].metrics.get(c)
            rec[c] = v
            rec[f"{c}_delta"] = None if v is None or first is None else v - first
        rec["run_dir"] = str(r.out_dir)
        out.append(rec)
    return out


def cell(value: Any, delta: Any, first: bool) -> str:
    """'6.59 (+0.44)': the value and, after the first row, its difference to the first row."""
    if first or value is None or delta is None:
        return format_value(value)
    return f"{format_value(value)} ({delta:+.3g})"


def write_sweep(rows: list[SweepRow], out_dir: Path, machine: str | None) -> dict[str, Path]:
    """sweep.json (records and the machine), sweep.md and sweep.csv in the sweep directory."""
    import pandas as pd

    recs = table_records(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "sweep.json", "markdown": out_dir / "sweep.md",
             "csv": out_dir / "sweep.csv"}
    paths["json"].write_text(json.dumps({"machine": machine, "rows": recs}, indent=2) + "\n",
                             encoding="utf-8")
    pd.DataFrame(recs).to_csv(paths["csv"], index=False, lineterminator="\r\n")
    cols, keys = columns(rows), list(rows[0].values) if rows else []
    lines = ["| " + " | ".join([*keys, *cols]) + " |", "|" + "---|" * len(keys) + "---:|" * len(cols)]
    lines += ["| " + " | ".join([*(rec[k] for k in keys),
                                 *(cell(rec[c], rec[f"{c}_delta"], i == 0) for c in cols)]) + " |"
              for i, rec in enumerate(recs)]
    if machine:
        lines.append(f"\nSpeed measured on {machine}.")
    paths["markdown"].write_text("\n".join(lines) + "\n", encoding="utf-8")
    return paths


@dataclass
class SweepRun:
    """A finished sweep: a row per setting, the sweep directory and the files written."""

    rows: list[SweepRow]
    out_dir: Path
    files: dict[str, Path]
    machine: str | None
    runs: list[Any]  # each setting's BenchRun


def sweep_out_dir(suite: Any, model: Any, out_dir: str | Path | None) -> Path:
    """`--out-dir`, else bench/SUITE-MODEL-sweep."""
    if out_dir is not None:
        return Path(out_dir)
    from speechkit.models.identity import model_card

    name = getattr(suite, "name", None) or Path(str(suite)).stem
    return Path("bench") / f"{name}-{model_card(model).slug}-sweep"


def run_sweep(suite: Any, model: Any, specs: list[str], *, out_dir: str | Path | None = None,
              decode: Any = None, runtime: Any = None, batch_size: int | None = None,
              notify: Callable[[str, str], None] | None = None, **bench: Any) -> SweepRun:
    """Run `speechkit.evaluation.bench.run_bench` once per setting of `specs` (each in its own
    sub-directory of the sweep directory) and tabulate them."""
    from speechkit.evaluation.bench import machine_label, run_bench
    from speechkit.models.base import DecodeOptions
    from speechkit.models.registry import RuntimeOptions

    settings = parse_sweep(specs)
    base = sweep_out_dir(suite, model, out_dir)
    decode, runtime = decode or DecodeOptions(), runtime or RuntimeOptions()
    rows, runs, machine = [], [], None
    for values in settings:
        d, r, b = apply_setting(values, decode, runtime, batch_size)
        if notify:
            notify("info", f"sweep {setting_label(values)} -> {base / setting_dir(values)}")
        run = run_bench(suite, model, out_dir=base / setting_dir(values), decode=d, runtime=r,
                        batch_size=b, notify=notify or (lambda *_: None), **bench)
        metrics = run.plan.suite.metrics or list(run.summary["metrics"])
        rows.append(sweep_row(values, run, metrics))
        runs.append(run)
        machine = machine or machine_label((run.summary["run"].get("speed") or {}).get("machine"))
    return SweepRun(rows, base, write_sweep(rows, base, machine), machine, runs)
