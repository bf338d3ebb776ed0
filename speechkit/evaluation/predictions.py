"""Prediction lines from any tool -> records ready to score, naming every line it cannot use.

Reads speechkit result lines (`id`, `text`, `reference`, `status`, `extras`) and other
tools' JSONL: NeMo output manifests (`audio_filepath`, `text` = reference, `pred_text`),
and lines with `prediction`/`hypothesis` fields. When a line has a separate prediction
field (`pred_text`, `prediction`, `hypothesis`), its `text` is read as the reference, as in
NeMo manifests. Duplicate ids: the last line wins (a resumed run rewrites failed items).

Values are text by one rule (`reference_text`): a string as is, a number by str(); a list
of strings is several references where the metric takes several (captions, open answers,
reference translations) and one reference when it holds one; anything else (an object,
true/false, a list for a one-reference metric) is named as unusable, never scored as the
text of its Python repr.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechkit.data import Item, Result, read_jsonl
from speechkit.errors import SpeechkitError
from speechkit.evaluation.metrics.scorers import Scoreable

HYP_KEYS = ("pred_text", "prediction", "hypothesis", "pred", "text")
REF_KEYS = ("reference", "references", "ref", "label")
ID_KEYS = ("id", "utt_id", "audio_filepath", "path")
# Tasks whose metric takes several references per item: AAC (coco-caption), SQA open
# answers (best match counts) and ST (sacreBLEU multi-reference BLEU and chrF).
MULTI_REFERENCE_TASKS = frozenset({"aac", "sqa", "st"})
_SURROGATE = re.compile("[\ud800-\udfff]")
# SV trial labels written as words.
_LABEL_WORDS = {
    "1": 1, "0": 0, "yes": 1, "no": 0, "true": 1, "false": 0, "target": 1, "nontarget": 0,
    "non-target": 0, "same": 1, "different": 0,
}


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


def _line_id(obj: Mapping[str, Any]) -> str | None:
    for k in ID_KEYS:
        v = obj.get(k)
        if isinstance(v, (str, int)) and not isinstance(v, bool) and v != "":
            return k
    return None


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
        key = _line_id(obj)
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


def _kind(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, dict):
        return "a JSON object"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, (int, float)):
        return str(value)  # 2, nan, inf
    return f"a {type(value).__name__}"


def as_text(value: Any, what: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, why not): a string as is, a finite number by str()."""
    if isinstance(value, str):
        return value, None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return str(value), None
    return None, f"{what} is {_kind(value)}, not text"


def reference_text(value: Any, task: str) -> tuple[str | list[str] | None, str | None]:
    """A reference by the module's rule: (text or texts, None), or (None, why not usable)."""
    if not isinstance(value, list):
        return as_text(value, "reference")
    texts = []
    for v in value:
        text, why = as_text(v, "a reference in the list")
        if why:
            return None, why
        texts.append(text)
    if len(texts) == 1:
        return texts[0], None
    if task in MULTI_REFERENCE_TASKS:
        return texts, None
    return None, (
        f"reference is a list of {len(texts)} texts and {task} scores against one: keep one "
        "(several references count for st, sqa and aac)"
    )


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
    return _LABEL_WORDS.get(value.strip().lower()) if isinstance(value, str) else None


def _sv_score(obj: Mapping[str, Any], extras: Mapping[str, Any]) -> tuple[float | None, str | None]:
    """The trial's continuous score (P(yes) or cosine), or why it is unusable."""
    for v in (extras.get("p_yes"), obj.get("score"), extras.get("score"), obj.get("p_yes")):
        if v is None:
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return None, f"score is {_kind(v)}, not a finite number"
        return float(v), None
    return None, None


Outcome = tuple[Scoreable | None, str | None, str | None]  # record, or why not + details


def scoreable(
    task: str, item_id: str, obj: dict[str, Any], item: Item | None, bad_text: list[str]
) -> Outcome:
    """(record, None, None), or (None, "no_prediction" | "no_reference" | "bad_value", why)."""
    extras = obj.get("extras") if isinstance(obj.get("extras"), dict) else {}
    hyp_key, hyp = _first(obj, HYP_KEYS)
    ref_keys = REF_KEYS if hyp_key == "text" else ("text", *REF_KEYS)  # NeMo: text = reference
    _, ref = _first(obj, ref_keys)
    if ref is None:
        ref = extras.get("reference")
    if ref is None and item is not None:
        ref = item.references if task == "aac" else None
        ref = ref if ref is not None else item.reference
    if ref is None and task in ("er", "sv"):
        ref = extras.get("label", item.label if item else None)
    text, bad = (None, None) if hyp is None else as_text(hyp, "prediction")
    if bad:
        return None, "bad_value", bad
    rec = Scoreable(id=item_id, text=_clean(text or "", bad_text, item_id), extras=extras)
    if task == "sv":
        return _sv_record(rec, obj, extras, item, ref, has_text=text is not None)
    if text is None:
        return None, "no_prediction", None
    if task == "aac" and item is not None and item.references and isinstance(ref, str):
        ref = item.references
    if ref is None or (isinstance(ref, list) and not ref):
        return None, "no_reference", None
    ref, bad = reference_text(ref, task)
    if bad:
        return None, "bad_value", bad
    rec.reference = _clean(ref, bad_text, item_id)
    _timing(rec, obj, item)
    if task == "sqa":
        ch = obj.get("choices") or extras.get("choices") or (item.choices if item else None)
        rec.choices = list(ch) if isinstance(ch, list) else None
    if task == "st":
        rec.target_language = (
            obj.get("target_language")
            or extras.get("target_language")
            or (item.target_language if item else None)
        )
    return rec, None, None


def _timing(rec: Scoreable, obj: Mapping[str, Any], item: Item | None) -> None:
    """The clip's length, the line's timed segments and the item's known pauses, where given
    (the hallucination metrics use them)."""
    dur = obj.get("duration_s")
    if isinstance(dur, (int, float)) and not isinstance(dur, bool) and math.isfinite(dur):
        rec.duration_s = float(dur)
    segs = obj.get("segments")
    if isinstance(segs, list):
        rec.segments = [s for s in segs if isinstance(s, dict) and isinstance(s.get("text"), str)
                        and all(isinstance(s.get(k), (int, float)) for k in ("start", "end"))]
    pauses = item.meta.get("pauses") if item is not None else None
    if isinstance(pauses, list):
        rec.pauses = [[float(a), float(b)] for a, b in pauses]


def _sv_record(rec: Scoreable, obj: Mapping[str, Any], extras: Mapping[str, Any],
               item: Item | None, ref: Any, has_text: bool) -> Outcome:
    rec.score, bad = _sv_score(obj, extras)
    if bad:
        return None, "bad_value", bad
    lab = obj.get("label", extras.get("label", item.label if item else None))
    lab = lab if lab is not None else ref
    rec.label = _label(lab)
    if lab is None or (isinstance(lab, str) and not lab.strip()):
        return None, "no_reference", None
    if rec.label is None:
        return None, "bad_value", f"label is {_kind(lab)}, not 1/0, yes/no or target/nontarget"
    if not has_text and rec.score is None:
        return None, "no_prediction", None
    return rec, None, None
