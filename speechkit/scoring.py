"""Score a predictions JSONL for a task, counting every line: nothing is silently dropped.

Reads speechkit result lines (`id`, `text`, `reference`, `status`, `extras`) and other
tools' JSONL: NeMo output manifests (`audio_filepath`, `text` = reference, `pred_text`),
and lines with `prediction`/`hypothesis` fields. The summary always carries counts of
expected, scored, errored, missing-reference and missing-prediction items, and names the
lines it could not use (bad JSON, non-UTF-8, no id, duplicate ids: the last line wins).
When a line has a separate prediction field (`pred_text`, `prediction`, `hypothesis`), its
`text` is read as the reference, as in NeMo manifests.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from speechkit import __version__
from speechkit.data import Item, Result, read_jsonl, read_manifest
from speechkit.errors import SpeechkitError
from speechkit.metrics.scorers import (
    DEFAULT_NORMALIZER,
    SCORERS,
    TEXT_TASKS,
    Scoreable,
    canonical_task,
)
from speechkit.normalizers import NORMALIZERS

HYP_KEYS = ("pred_text", "prediction", "hypothesis", "pred", "text")
REF_KEYS = ("reference", "references", "ref", "label")
ID_KEYS = ("id", "utt_id", "audio_filepath", "path")
_SURROGATE = re.compile("[\ud800-\udfff]")


@dataclass
class LoadedPredictions:
    """Predictions by id (last line wins) plus every problem met while reading them."""

    by_id: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: int = 0
    bad_lines: list[dict[str, Any]] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)  # id -> extra lines
    ids_from_path: int = 0
    source: str = "<records>"


def _as_dict(rec: Any) -> dict[str, Any]:
    if isinstance(rec, Result):
        return rec.to_dict()
    if isinstance(rec, Mapping):
        return dict(rec)
    raise SpeechkitError(f"cannot score a {type(rec).__name__}: pass dicts or Result records")


def load_predictions(source: str | Path | Iterable[Any]) -> LoadedPredictions:
    """Read predictions from a JSONL path or records, keeping problems for the summary."""
    out = LoadedPredictions()
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise SpeechkitError(f"{path}: no such predictions file; check the path")
        out.source = str(path)
        rows: Iterable[tuple[int, dict[str, Any] | None, str | None]] = read_jsonl(path)
    else:
        rows = ((n, _as_dict(r), None) for n, r in enumerate(source, 1))
    for lineno, obj, err in rows:
        out.lines += 1
        if err:
            out.bad_lines.append({"line": lineno, "error": err})
            continue
        key = next(
            (k for k in ID_KEYS if isinstance(obj.get(k), (str, int)) and obj[k] != ""), None
        )
        if key is None:
            out.bad_lines.append({"line": lineno, "error": "has no id (nor audio_filepath/path)"})
            continue
        out.ids_from_path += key not in ("id", "utt_id")
        item_id = str(obj[key])
        if item_id in out.by_id:
            out.duplicates[item_id] = out.duplicates.get(item_id, 0) + 1
        obj["_line"] = lineno
        out.by_id[item_id] = obj
    return out


def _load_expected(expected: str | Path | Sequence[Item] | None) -> dict[str, Item] | None:
    if expected is None:
        return None
    items = read_manifest(Path(expected)) if isinstance(expected, (str, Path)) else expected
    bad = [it.error for it in items if it.error]
    if bad:
        raise SpeechkitError(f"expected-items manifest has {len(bad)} bad line(s): {bad[0]}")
    return {it.id: it for it in items}


def _first(obj: Mapping[str, Any], keys: Sequence[str]) -> tuple[str | None, Any]:
    for k in keys:
        if k in obj and obj[k] is not None:
            return k, obj[k]
    return None, None


def _clean(value: Any, bad_text: list[str], item_id: str) -> Any:
    """Replace lone surrogates (undecodable bytes) with U+FFFD and note the id."""
    if isinstance(value, str):
        if _SURROGATE.search(value) or "\ufffd" in value:
            bad_text.append(item_id)
            return _SURROGATE.sub("\ufffd", value)
        return value
    if isinstance(value, list):
        return [_clean(v, bad_text, item_id) for v in value]
    return value


def _label(value: Any) -> int | None:
    """SV trial label from 1/0, true/false, yes/no, target/nontarget."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return int(value)
    s = str(value).strip().lower() if value is not None else ""
    return {
        "1": 1,
        "0": 0,
        "yes": 1,
        "no": 0,
        "true": 1,
        "false": 0,
        "target": 1,
        "nontarget": 0,
        "non-target": 0,
        "same": 1,
        "different": 0,
    }.get(s)


def _scoreable(
    task: str, item_id: str, obj: dict[str, Any], item: Item | None, bad_text: list[str]
) -> tuple[Scoreable | None, str | None]:
    """(record, None) or (None, why it cannot be scored: 'no_prediction'/'no_reference')."""
    extras = obj.get("extras") if isinstance(obj.get("extras"), dict) else {}
    meta = item.meta if item else {}
    hyp_key, text = _first(obj, HYP_KEYS)
    ref_keys = REF_KEYS if hyp_key == "text" else ("text", *REF_KEYS)  # NeMo: text = reference
    _, ref = _first(obj, ref_keys)
    if ref is None:
        ref = extras.get("reference")
    if ref is None and item is not None:
        ref = meta.get("references") if task == "aac" else None
        ref = ref if ref is not None else item.reference
    if ref is None and task in ("er", "sv"):
        ref = extras.get("label", meta.get("label"))
    rec = Scoreable(
        id=item_id,
        text=_clean(str(text) if text is not None else "", bad_text, item_id),
        reference=_clean(ref, bad_text, item_id),
        extras=extras,
    )
    if task == "aac" and item is not None and meta.get("references") and isinstance(ref, str):
        rec.reference = list(meta["references"])
    if task == "sv":
        raw = next(
            (
                v
                for v in (
                    extras.get("p_yes"),
                    obj.get("score"),
                    extras.get("score"),
                    obj.get("p_yes"),
                )
                if isinstance(v, (int, float))
            ),
            None,
        )
        rec.score = float(raw) if raw is not None else None
        lab = obj.get("label", extras.get("label", meta.get("label")))
        rec.label = _label(lab if lab is not None else ref)
        if rec.label is None:
            return None, "no_reference"
        if text is None and rec.score is None:
            return None, "no_prediction"
        return rec, None
    if text is None:
        return None, "no_prediction"
    if ref is None or (isinstance(ref, list) and not ref):
        return None, "no_reference"
    if task == "sqa":
        ch = obj.get("choices") or extras.get("choices") or meta.get("choices")
        rec.choices = list(ch) if isinstance(ch, list) else None
    if task == "st":
        rec.target_language = (
            obj.get("target_language")
            or extras.get("target_language")
            or meta.get("target_language")
        )
    return rec, None


def _resolve_task(task: str | None, suite: Any, loaded: LoadedPredictions) -> str:
    if task is None and suite is not None:
        task = suite.task
    if task is None:
        seen = {str(o.get("task")) for o in loaded.by_id.values() if o.get("task")}
        if len(seen) != 1:
            raise SpeechkitError(
                "say which task to score with --task (asr, avsr, vsr, st, sv, "
                "er, sqa, aac); the lines do not name one task"
            )
        task = seen.pop()
    try:
        return canonical_task(task)
    except ValueError as e:
        raise SpeechkitError(str(e)) from None


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
    if normalizer is None and suite is not None and task in TEXT_TASKS:
        normalizer = suite.normalizer
    if normalizer is None:
        normalizer = DEFAULT_NORMALIZER.get(task)
    if normalizer is not None and normalizer not in NORMALIZERS:
        raise SpeechkitError(
            f"unknown normalizer {normalizer!r}; choose one of: {', '.join(NORMALIZERS)}"
        )
    if task not in TEXT_TASKS and normalizer not in (None, "none"):
        raise SpeechkitError(f"--normalizer applies to asr/avsr/vsr/st only, not {task}")
    items = _load_expected(expected)

    errored, no_pred, no_ref, unexpected, bad_text = [], [], [], [], []
    ready: list[Scoreable] = []
    for item_id, obj in loaded.by_id.items():
        if items is not None and item_id not in items:
            unexpected.append(item_id)
            continue
        if obj.get("status", "ok") != "ok" or obj.get("error"):
            errored.append({"id": item_id, "error": str(obj.get("error") or obj.get("status"))})
            continue
        rec, why = _scoreable(task, item_id, obj, items.get(item_id) if items else None, bad_text)
        if rec is not None:
            ready.append(rec)
        elif why == "no_prediction":
            no_pred.append(item_id)
        else:
            no_ref.append(item_id)
    missing = [i for i in items if i not in loaded.by_id] if items is not None else []

    metrics, details, per = SCORERS[task](
        ready,
        normalizer=normalizer,
        labels=labels,
        target_language=target_language,
        use_java=use_java,
    )
    counts = {
        "lines": loaded.lines,
        "bad_lines": len(loaded.bad_lines),
        "predictions": len(loaded.by_id),
        "duplicate_lines": sum(loaded.duplicates.values()),
        "expected": len(items) if items is not None else None,
        "missing": len(missing) if items is not None else None,
        "unexpected": len(unexpected),
        "errored": len(errored),
        "no_prediction": len(no_pred),
        "missing_reference": len(no_ref),
        "undecodable_text": len(set(bad_text)),
        "scored": len(ready),
    }
    problems = {
        "bad_lines": loaded.bad_lines,
        "duplicate_ids": loaded.duplicates,
        "missing_ids": missing,
        "unexpected_ids": unexpected,
        "errored": errored,
        "no_prediction_ids": no_pred,
        "missing_reference_ids": no_ref,
        "undecodable_text_ids": sorted(set(bad_text)),
    }
    warnings = _warnings(counts, problems, loaded)
    if details.get("empty_references"):
        warnings.append(
            f"{details['empty_references']} reference(s) are empty after "
            "normalization: their hypothesis words count as insertions"
        )
    summary: dict[str, Any] = {
        "task": task,
        "normalizer": normalizer,
        "metrics": metrics,
        "counts": counts,
        "complete": _complete(counts),
        "warnings": warnings,
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


def _complete(c: Mapping[str, Any]) -> bool:
    total = c["expected"] if c["expected"] is not None else c["predictions"]
    return c["scored"] == total and c["bad_lines"] == 0 and c["unexpected"] == 0


def _names(ids: Sequence[Any], limit: int = 10) -> str:
    shown = ", ".join(str(i) for i in ids[:limit])
    return shown + (f", ... ({len(ids) - limit} more)" if len(ids) > limit else "")


def _warnings(c: Mapping[str, Any], p: Mapping[str, Any], loaded: LoadedPredictions) -> list[str]:
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
    if p["errored"]:
        w.append(
            f"{len(p['errored'])} item(s) failed during the run (not scored): "
            + _names([e["id"] for e in p["errored"]])
        )
    if loaded.ids_from_path:
        w.append(f"{loaded.ids_from_path} line(s) have no `id`; their audio path was used")
    return w


def compact_summary(summary: Mapping[str, Any], limit: int = 20) -> dict[str, Any]:
    """The summary with long id lists cut to `limit` entries (for printing)."""
    out = dict(summary)
    out.pop("per_item", None)
    probs = {}
    for k, v in summary.get("problems", {}).items():
        if isinstance(v, list) and len(v) > limit:
            probs[k] = [*v[:limit], f"... {len(v) - limit} more (see --out)"]
        elif isinstance(v, dict) and len(v) > limit:
            probs[k] = dict(list(v.items())[:limit]) | {"...": f"{len(v) - limit} more"}
        else:
            probs[k] = v
    out["problems"] = probs
    details = dict(summary.get("details", {}))
    for k, v in list(details.items()):
        if isinstance(v, list) and len(v) > limit:
            details[k] = [*v[:limit], f"... {len(v) - limit} more (see --out)"]
    out["details"] = details
    return out
