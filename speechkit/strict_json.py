"""Strict JSON out: every line and file speechkit writes parses with any JSON reader.

Python's `json` writes NaN and infinities as the bare words `NaN`, `Infinity` and
`-Infinity`, which RFC 8259 readers (jq, JavaScript, Go, Rust, `json.loads` with a strict
`parse_constant`) reject. One rule for everything speechkit writes, applied here: a
non-finite number is written as null, and the top-level object (each object of a
top-level list) gets `"non_finite": {"path.to.key": "NaN"}` naming what it was.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

NON_FINITE_KEY = "non_finite"


def _spelling(x: float) -> str:
    return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")


def replace_non_finite(obj: Any, path: str = "") -> tuple[Any, dict[str, str]]:
    """(a copy of `obj` with non-finite floats as None, {path: "NaN" | "Infinity" | ...})."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None, {path or "$": _spelling(obj)}
    found: dict[str, str] = {}
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            out[k], sub = replace_non_finite(v, f"{path}.{k}" if path else str(k))
            found |= sub
        return out, found
    if isinstance(obj, (list, tuple)):
        items = []
        for i, v in enumerate(obj):
            clean, sub = replace_non_finite(v, f"{path}[{i}]")
            items.append(clean)
            found |= sub
        return items, found
    return obj, found


def _noted(obj: Any) -> Any:
    clean, found = replace_non_finite(obj)
    if found and isinstance(clean, dict):
        earlier = clean.get(NON_FINITE_KEY)
        clean[NON_FINITE_KEY] = (earlier if isinstance(earlier, dict) else {}) | found
    return clean


def dumps(obj: Any, indent: int | None = None) -> str:
    """Strict JSON text of `obj` (UTF-8 kept as is); non-finite numbers become null + a note."""
    clean = [_noted(x) for x in obj] if isinstance(obj, (list, tuple)) else _noted(obj)
    return json.dumps(clean, ensure_ascii=False, allow_nan=False, indent=indent)


def write_json(path: str | Path, obj: Any) -> Path:
    """Write `obj` as indented strict JSON (creating the folder); returns the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(dumps(obj, indent=2) + "\n", encoding="utf-8")
    return p
