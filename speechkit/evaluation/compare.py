"""Compare two score files metric by metric, direction-aware, for regression gates in CI.

Lower is better for error rates and costs (WER, CER, EER, minDCF); higher is better for
BLEU, chrF, accuracies, F1, exact match and captioning metrics. Thresholds are absolute,
in the metric's own units (WER points, BLEU points, ...). A metric in the baseline but
missing from the new scores is a regression; so is scoring fewer items than the baseline, a
value that is not a finite number (NaN, Infinity, null) in either file, a new run that
says it is incomplete when the baseline was complete, and a new run whose batch-invariance
check (`bench --check-batch-invariance`) found items that differ when decoded one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from speechkit.data import read_json_object
from speechkit.errors import SpeechkitError

LOWER_IS_BETTER = ("wer", "cer", "eer", "mindcf", "ter", "der", "false_transcription_rate",
                   "inserted_words_per_min", "repetition_loop_rate", "pause_insertions")
HIGHER_IS_BETTER = (
    "bleu",
    "chrf",
    "accuracy",
    "weighted_accuracy",
    "unweighted_accuracy",
    "f1",
    "exact_match",
    "cider",
    "spider",
    "spice",
    "meteor",
    "rouge",
    "rtfx",
)
COUNT_KEY = "items_scored"  # pseudo-metric: counts.scored, higher is better, threshold 0


def direction(metric: str) -> int | None:
    """-1 when lower is better, +1 when higher is better, None when unknown."""
    base = metric.rsplit("/", 1)[-1].lower()
    if base == COUNT_KEY:
        return +1
    for sign, names in ((-1, LOWER_IS_BETTER), (+1, HIGHER_IS_BETTER)):
        if any(base == p or base.startswith((p + "_", p + ".")) for p in names):
            return sign
    return None


def flatten_scores(scores: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{metric: value} from a score summary, a flat dict, or nested per-split summaries.

    `{"metrics": {...}, "counts": {...}}` gives its metrics plus `items_scored`; nested
    `{"splits"|"results": {name: summary}}` gives `name/metric` keys. Numbers come back as
    floats (NaN and infinities included); a metric that is null or text stays as it is, so
    the gate can name it.
    """
    out: dict[str, Any] = {}
    for key in ("splits", "results"):
        if isinstance(scores.get(key), Mapping):
            for name, sub in scores[key].items():
                if isinstance(sub, Mapping):
                    out.update(flatten_scores(sub, f"{prefix}{name}/"))
    if isinstance(scores.get("metrics"), Mapping):
        for k, v in scores["metrics"].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[prefix + k] = float(v)
            elif v is None or isinstance(v, str):
                out[prefix + k] = v
        counts = scores.get("counts")
        if isinstance(counts, Mapping) and isinstance(counts.get("scored"), int):
            out[prefix + COUNT_KEY] = float(counts["scored"])
    elif not out:
        for k, v in scores.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out[prefix + k] = float(v)
    return out


def load_scores(path: str | Path) -> dict[str, Any]:
    """A scores.json file; a missing or non-JSON file is a user error naming the path."""
    p = Path(path)
    if not p.is_file():
        raise SpeechkitError(f"{p}: no such scores file; run `speechkit score ... --out {p}`")
    return read_json_object(p, "scores file")


def parse_thresholds(values: list[str] | None) -> float | dict[str, float]:
    """`["0.5"]` -> 0.5; `["wer=0.5", "bleu=1"]` -> {"wer": 0.5, "bleu": 1.0}."""
    if not values:
        return 0.0
    if len(values) == 1 and "=" not in values[0]:
        return _number(values[0], "--max-regression")
    out: dict[str, float] = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not name.strip():
            raise SpeechkitError(
                f"--max-regression {v!r}: use one number for every metric, "
                "or METRIC=NUMBER (repeatable), e.g. wer=0.5"
            )
        out[name.strip().lower()] = _number(num, f"--max-regression {name}")
    return out


def _number(text: str, what: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise SpeechkitError(f"{what}: {text!r} is not a number") from None
    if x < 0 or not math.isfinite(x):
        raise SpeechkitError(f"{what}: the threshold must be a number >= 0")
    return x


def _threshold(metric: str, max_regression: float | Mapping[str, float]) -> float | None:
    """Allowed worsening for `metric`; None = not gated (a dict that does not name it)."""
    lower = (
        {k.lower(): v for k, v in max_regression.items()}
        if isinstance(max_regression, Mapping)
        else {}
    )
    base = metric.rsplit("/", 1)[-1].lower()
    for key in (metric.lower(), base):
        if key in lower:
            return float(lower[key])
    if base == COUNT_KEY:
        return 0.0  # fewer scored items always fails unless named: scores are not comparable
    if not isinstance(max_regression, Mapping):
        return float(max_regression)
    return lower.get("*", lower.get("default"))


def compare_scores(
    baseline: Mapping[str, Any],
    new: Mapping[str, Any],
    max_regression: float | Mapping[str, float] = 0.0,
) -> list[dict[str, Any]]:
    """One row per metric: metric, baseline, new, delta, direction, threshold, regressed.

    A float threshold gates every metric of known direction; a dict gates the metrics it
    names (by full key or base name, `*` for the rest) and reports the others ungated.
    """
    frame = compare_frame(baseline, new, max_regression)
    rows = [{k: (None if k == "delta" and v != v else v) for k, v in r.items()}  # NaN: no delta
            for r in frame.to_dict("records")]
    extra = [_completeness_row(baseline, new), _invariance_row(baseline, new, max_regression)]
    return rows + [r for r in extra if r]


def compare_frame(
    baseline: Mapping[str, Any],
    new: Mapping[str, Any],
    max_regression: float | Mapping[str, float] = 0.0,
) -> pd.DataFrame:
    """The metrics of both files side by side (baseline's order, then new ones), with the
    delta, direction, threshold, whether each regressed and why."""
    base, cur = flatten_scores(baseline), flatten_scores(new)
    if not base:
        raise SpeechkitError("the baseline has no numeric metrics to compare")
    metrics = [*base, *(m for m in cur if m not in base)]
    f = pd.DataFrame({"metric": metrics}, dtype=object)
    f["baseline"] = pd.Series([base.get(m) for m in metrics], dtype=object)
    f["new"] = pd.Series([cur.get(m) for m in metrics], dtype=object)
    b, n = _numbers(f["baseline"]), _numbers(f["new"])
    finite = np.isfinite(b) & np.isfinite(n)
    f["delta"] = (n - b).where(finite)
    sign = f["metric"].map(direction)
    f["direction"] = sign.map({-1: "lower", 1: "higher"}).fillna("unknown")
    f["threshold"] = pd.Series([_threshold(m, max_regression) for m in metrics], dtype=object)
    worse_by = (n - b) * -sign.astype(float)  # positive when the new value is worse
    bad = [_not_finite(m, base, cur) for m in metrics]
    in_base, in_new = f["metric"].isin(list(base)), f["metric"].isin(list(cur))
    gated = finite & sign.notna() & f["threshold"].notna()
    worse = gated & (worse_by > f["threshold"].where(gated, 0).astype(float) + 1e-9)
    f["regressed"] = pd.Series([bool(x) for x in bad]) | (in_base & ~in_new) | worse
    f["note"] = [_note(x, ib, inn, d, t, w, r) for x, ib, inn, d, t, w, r in zip(
        bad, in_base, in_new, sign, f["threshold"], worse_by, worse, strict=True)]
    f["regressed"] = f["regressed"].astype(object).map(bool)
    return f


def _numbers(values: pd.Series) -> pd.Series:
    """The values as floats; null and text become NaN (they are named as not finite)."""
    return pd.to_numeric(values.map(lambda v: v if isinstance(v, float) else None),
                         errors="coerce").astype(float)


def _note(bad: list[str], in_base: bool, in_new: bool, sign: Any, threshold: float | None,
          worse_by: float, regressed: bool) -> str:
    """Why a row is what it is, in the order the checks apply."""
    if bad:
        return f"{' and '.join(bad)}: not a finite number"
    if not in_base:
        return "new metric (not in the baseline)"
    if not in_new:
        return "missing from the new scores"
    if sign != sign or sign is None:
        return "direction unknown: not gated"
    if threshold is None:
        return "not gated"
    return f"worse by {worse_by:.4g} (allowed {threshold:g})" if regressed else ""


def _not_finite(metric: str, base: Mapping[str, Any], cur: Mapping[str, Any]) -> list[str]:
    """"baseline value is NaN" and the like, for each file where `metric` is not a number."""
    return [f"{which} value is {_spell(scores[metric])}"
            for which, scores in (("baseline", base), ("new", cur))
            if metric in scores and not _finite(scores[metric])]


def _finite(v: Any) -> bool:
    return isinstance(v, float) and math.isfinite(v)


def _spell(v: Any) -> str:
    """A value as JSON would show it: NaN, Infinity, -Infinity, null, "text"."""
    if isinstance(v, float):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return "null" if v is None else repr(v)


def _completeness_row(baseline: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, Any] | None:
    """A failing row when the new scores say they are incomplete and the baseline did not."""
    if new.get("complete") is not False or baseline.get("complete") is False:
        return None
    why = "; ".join(str(r) for r in new.get("incomplete") or [])
    return {
        "metric": "complete", "baseline": baseline.get("complete"), "new": False, "delta": None,
        "direction": "unknown", "threshold": None, "regressed": True,
        "note": "the new run is incomplete" + (f": {why}" if why else ""),
    }


INVARIANCE_KEY = "batch_invariance"  # items that differ when decoded one at a time


def _invariance_row(baseline: Mapping[str, Any], new: Mapping[str, Any],
                    max_regression: float | Mapping[str, float]) -> dict[str, Any] | None:
    """The batch-invariance check of the new run: it fails on more differing items than
    allowed (none, unless `batch_invariance=N` is given), whatever the baseline says."""
    check = new.get(INVARIANCE_KEY)
    if not isinstance(check, Mapping):
        return None
    named = isinstance(max_regression, Mapping) and INVARIANCE_KEY in {
        k.lower() for k in max_regression}
    allowed = float(_threshold(INVARIANCE_KEY, max_regression) or 0) if named else 0.0
    before = baseline.get(INVARIANCE_KEY)
    was = before.get("differing") if isinstance(before, Mapping) else None
    now = check.get("differing")
    bad = not isinstance(now, int) or now > allowed
    ids = ", ".join(str(d.get("id")) for d in check.get("differences") or [])
    note = (f"{now} of {check.get('checked')} item(s) differ when decoded one at a time"
            + (f": {ids}" if ids else "")) if bad else f"{check.get('checked')} item(s) checked"
    return {"metric": INVARIANCE_KEY, "baseline": was, "new": now,
            "delta": None if was is None or now is None else now - was,
            "direction": "lower", "threshold": allowed, "regressed": bad, "note": note}


def any_regressed(rows: list[dict[str, Any]]) -> bool:
    """True when any compared metric regressed."""
    return any(r["regressed"] for r in rows)
