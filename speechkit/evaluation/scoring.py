"""Score a predictions JSONL for a task, counting every line: nothing is silently dropped.

The summary always carries counts of expected, scored, errored, missing-reference,
missing-prediction and unusable items, and names the lines it could not use (bad JSON,
non-UTF-8, no id, a value that is not text; duplicate ids: the last line wins). A run is
`complete` only when every expected item was scored and the metrics could be computed;
otherwise `incomplete` says why (an empty file, every reference empty, a NaN metric, ...).
How lines are read and what counts as text: `speechkit.evaluation.predictions`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechkit import __version__
from speechkit.data import Item
from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.normalizers import NORMALIZERS
from speechkit.evaluation.metrics.scorers import SCORERS, Scoreable
from speechkit.evaluation.predictions import LoadedPredictions, load_predictions, scoreable
from speechkit.inputs import read_manifest
from speechkit.tasks import TASKS, get_task


@dataclass
class Expected:
    """The items that should be scored: by id, plus ids listed more than once."""

    by_id: dict[str, Item]
    total: int  # items listed, repeats included: a repeated id cannot be scored twice
    repeated: dict[str, int] = field(default_factory=dict)  # id -> extra listings


def _load_expected(expected: str | Path | Sequence[Item] | None) -> Expected | None:
    if expected is None:
        return None
    if isinstance(expected, (str, Path)):
        items = read_manifest(Path(expected))
        bad = [it.error for it in items if it.error]
        if bad:
            raise SpeechkitError(f"expected-items manifest has {len(bad)} bad line(s): {bad[0]}")
    else:
        items = list(expected)  # a run's items: an unreadable one has its error line to count
    out = Expected({}, len(items))
    for it in items:
        if it.id in out.by_id:
            out.repeated[it.id] = out.repeated.get(it.id, 0) + 1
        out.by_id[it.id] = it
    return out


def _resolve_task(task: str | None, suite: Any, loaded: LoadedPredictions) -> str:
    if task is None and suite is not None:
        task = suite.task
    if task is None:
        seen = {str(o.get("task")) for o in loaded.by_id.values() if o.get("task")}
        if len(seen) != 1:
            raise SpeechkitError(
                f"say which task to score with --task ({', '.join(TASKS)}); the lines do not "
                "name one task"
            )
        task = seen.pop()
    return get_task(task).name


def _resolve_normalizer(normalizer: str | None, task: str, suite: Any) -> str | None:
    text_task = TASKS[task].normalizer is not None  # scored as text: a normalizer applies
    if normalizer is None and suite is not None and text_task:
        normalizer = suite.normalizer
    if normalizer is None:
        normalizer = TASKS[task].normalizer
    if normalizer is not None and normalizer not in NORMALIZERS:
        raise SpeechkitError(
            f"unknown normalizer {normalizer!r}; choose one of: {', '.join(NORMALIZERS)}"
        )
    if not text_task and normalizer not in (None, "none"):
        text_tasks = "/".join(t.name for t in TASKS.values() if t.normalizer is not None)
        raise SpeechkitError(f"--normalizer applies to {text_tasks} only, not {task}")
    return normalizer


@dataclass
class Sorted:
    """Each prediction line in exactly one place: ready to score or the reason it is not."""

    ready: list[Scoreable] = field(default_factory=list)
    errored: list[dict[str, str]] = field(default_factory=list)
    no_prediction: list[str] = field(default_factory=list)
    no_reference: list[str] = field(default_factory=list)
    bad_values: list[dict[str, str]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    bad_text: list[str] = field(default_factory=list)


def _sort_lines(task: str, loaded: LoadedPredictions, items: Expected | None) -> Sorted:
    out = Sorted()
    for item_id, obj in loaded.by_id.items():
        if items is not None and item_id not in items.by_id:
            out.unexpected.append(item_id)
            continue
        if obj.get("status", "ok") != "ok" or obj.get("error"):
            out.errored.append({"id": item_id, "error": str(obj.get("error") or obj.get("status"))})
            continue
        item = items.by_id.get(item_id) if items is not None else None
        rec, why, detail = scoreable(task, item_id, obj, item, out.bad_text)
        if rec is not None:
            out.ready.append(rec)
        elif why == "no_prediction":
            out.no_prediction.append(item_id)
        elif why == "no_reference":
            out.no_reference.append(item_id)
        else:
            out.bad_values.append({"id": item_id, "error": str(detail)})
    return out


def score_predictions(
    predictions: str | Path | Iterable[Any],
    task: str | None = None,
    normalizer: str | None = None,
    expected: str | Path | Sequence[Item] | None = None,
    suite: Any = None,
    labels: Any = None,
    target_language: str | None = None,
    use_java: bool | None = None,
    per_item: bool = False,
    expected_ids: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score predictions for `task`; the summary counts and names every unusable line.

    `expected` (a manifest path or Items) or `expected_ids` (ids only) names the items that
    should be there, so missing and unexpected ids are counted.
    """
    if expected is None and expected_ids is not None:
        expected = [Item(id=str(i), path="") for i in expected_ids]
    loaded = load_predictions(predictions)
    task = _resolve_task(task, suite, loaded)
    normalizer = _resolve_normalizer(normalizer, task, suite)
    items = _load_expected(expected)
    lines = _sort_lines(task, loaded, items)
    missing = [i for i in items.by_id if i not in loaded.by_id] if items is not None else []
    metrics, details, per = SCORERS[task](
        lines.ready,
        normalizer=normalizer,
        labels=labels,
        target_language=target_language,
        use_java=use_java,
        nonspeech=bool(getattr(suite, "raw", {}).get("nonspeech")),  # empty references intended
    )
    counts = _counts(loaded, items, lines, missing)
    problems = _problems(loaded, items, lines, missing)
    incomplete = incomplete_reasons(counts, loaded, task, metrics, details, lines.ready)
    summary: dict[str, Any] = {
        "task": task,
        "normalizer": normalizer,
        "metrics": metrics,
        "counts": counts,
        "complete": not incomplete,
        "incomplete": incomplete,
        "warnings": _warnings(counts, problems, loaded, details),
        "details": details,
        "problems": problems,
        "source": loaded.source,
        "suite": getattr(suite, "name", None),
        "speechkit_version": __version__,
        "scored_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    if per_item:
        summary["per_item"] = per
    return summary


def _counts(
    loaded: LoadedPredictions, items: Expected | None, lines: Sorted, missing: list[str]
) -> dict[str, Any]:
    return {
        "lines": loaded.lines,
        "bad_lines": len(loaded.bad_lines),
        "predictions": len(loaded.by_id),
        "duplicate_lines": sum(loaded.duplicates.values()),
        "expected": items.total if items is not None else None,
        "repeated_expected": sum(items.repeated.values()) if items is not None else None,
        "missing": len(missing) if items is not None else None,
        "unexpected": len(lines.unexpected),
        "errored": len(lines.errored),
        "no_prediction": len(lines.no_prediction),
        "missing_reference": len(lines.no_reference),
        "bad_value": len(lines.bad_values),
        "undecodable_text": len(set(lines.bad_text)),
        "scored": len(lines.ready),
    }


def _problems(
    loaded: LoadedPredictions, items: Expected | None, lines: Sorted, missing: list[str]
) -> dict[str, Any]:
    return {
        "bad_lines": loaded.bad_lines,
        "duplicate_ids": loaded.duplicates,
        "repeated_expected_ids": items.repeated if items is not None else {},
        "missing_ids": missing,
        "unexpected_ids": lines.unexpected,
        "errored": lines.errored,
        "no_prediction_ids": lines.no_prediction,
        "missing_reference_ids": lines.no_reference,
        "bad_values": lines.bad_values,
        "undecodable_text_ids": sorted(set(lines.bad_text)),
    }


def _is_empty(reference: Any) -> bool:
    refs = reference if isinstance(reference, list) else [reference]
    return all(not str(r).strip() for r in refs)


# How summaries word each count of items or lines that were not scored as they are.
COUNT_LABELS = {
    "missing": "missing",
    "errored": "failed in the run",
    "no_prediction": "without prediction",
    "missing_reference": "without reference",
    "bad_value": "with a value that is not text",
    "repeated_expected": "repeated id(s) in the expected items",
    "bad_lines": "unusable line(s)",
    "unexpected": "not expected",
    "duplicate_lines": "duplicate line(s), last kept",
    "undecodable_text": "with non-UTF-8 text",
}
# The counts that explain why fewer items were scored than expected.
SHORTFALL = ("missing", "errored", "no_prediction", "missing_reference", "bad_value",
             "repeated_expected")


def incomplete_reasons(
    c: Mapping[str, Any],
    loaded: LoadedPredictions,
    task: str,
    metrics: Mapping[str, float],
    details: Mapping[str, Any],
    ready: Sequence[Scoreable],
) -> list[str]:
    """Why a scored run is not complete, one short phrase each; empty when it is."""
    total = c["expected"] if c["expected"] is not None else c["predictions"]
    out = []
    if total == 0:
        what = "the expected items are empty" if c["expected"] is not None else (
            f"{loaded.source} has no usable lines" if c["lines"] else f"{loaded.source} is empty")
        out.append(f"nothing to score: {what}")
    elif c["scored"] != total:
        why = [f"{c[k]} {COUNT_LABELS[k]}" for k in SHORTFALL if c.get(k)]
        out.append(f"scored {c['scored']} of {total} items" + (f" ({', '.join(why)})" if why else ""))
    if c["bad_lines"]:
        out.append(f"{c['bad_lines']} unusable line(s)")
    if c["unexpected"]:
        out.append(f"{c['unexpected']} prediction(s) are not expected items")
    if (ready and task != "sv" and "false_transcription_rate" not in metrics
            and all(_is_empty(r.reference) for r in ready)):  # no speech by design: measured
        out.append("every reference is empty: there is nothing to score against")
    elif ready and not metrics:
        why = next((str(v) for k, v in details.items() if k.endswith("not_computed")), None)
        out.append("no metric could be computed" + (f": {why}" if why else ""))
    for name, value in details.get("not_finite", {}).items():
        out.append(f"{name} came out {value}: it is left out of the metrics")
    return out


def _names(ids: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def _warnings(
    c: Mapping[str, Any],
    p: Mapping[str, Any],
    loaded: LoadedPredictions,
    details: Mapping[str, Any],
) -> list[str]:
    w = []
    total = c["expected"] if c["expected"] is not None else c["predictions"]
    if c["scored"] != total:
        w.append(
            f"scored {c['scored']} of {total} "
            f"{'expected' if c['expected'] is not None else ''} items".replace("  ", " ")
        )
    if c["bad_lines"]:
        w.append(
            f"{c['bad_lines']} unusable line(s): "
            + _names([f"line {b['line']} {b['error']}" for b in p["bad_lines"]], 5)
        )
    if c["duplicate_lines"]:
        w.append(
            f"{len(p['duplicate_ids'])} duplicate id(s), the last line of each was kept: "
            + _names(list(p["duplicate_ids"]))
        )
    if p["repeated_expected_ids"]:
        w.append(
            f"{len(p['repeated_expected_ids'])} id(s) are listed more than once in the expected "
            "items (one prediction each can be scored; give each item its own id): "
            + _names(list(p["repeated_expected_ids"]))
        )
    for key, label in (
        ("missing_ids", "expected item(s) have no prediction"),
        ("unexpected_ids", "prediction(s) are not in the expected items (not scored)"),
        ("no_prediction_ids", "line(s) have no prediction text"),
        ("missing_reference_ids", "line(s) have no reference (not scored)"),
        (
            "undecodable_text_ids",
            "item(s) have text that was not valid UTF-8 (scored with U+FFFD in its place)",
        ),
    ):
        if p[key]:
            w.append(f"{len(p[key])} {label}: {_names(p[key])}")
    if p["bad_values"]:
        w.append(
            f"{len(p['bad_values'])} line(s) have a value that is not text (not scored): "
            + _names([f"{b['id']} ({b['error']})" for b in p["bad_values"]], 5)
        )
    if p["errored"]:
        w.append(
            f"{len(p['errored'])} item(s) failed during the run (not scored): "
            + _names([e["id"] for e in p["errored"]])
        )
    if loaded.ids_from_path:
        w.append(f"{loaded.ids_from_path} line(s) have no `id`; their audio path was used")
    w += _detail_warnings(details)
    return w


def _detail_warnings(details: Mapping[str, Any]) -> list[str]:
    """Warnings the scorer's details call for: answers it could not read, empty references."""
    w = []
    if details.get("unparsed_answers"):
        w.append(
            f"{len(details['unparsed_answers'])} answer(s) could not be parsed and count as "
            "wrong: " + _names([u["id"] for u in details["unparsed_answers"]])
        )
    if details.get("empty_references") and not details.get("nonspeech_items"):  # by design there
        w.append(
            f"{details['empty_references']} reference(s) are empty after "
            "normalization: their hypothesis words count as insertions"
        )
    return w
