"""Items from what the user names: files, directories, glob patterns and manifests
(speechkit's own JSONL schema, written and read back by `write_manifest`/`read_manifest`, or
NeMo-style `audio_filepath`/`text`/`duration`/`offset` lines)."""

from __future__ import annotations

import glob
import json
import math
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from speechkit.data import (
    _LEGACY_META,
    Item,
    dumps_line,
    read_jsonl,
    require_regular_file,
)
from speechkit.languages import language_code

# Extensions taken when a directory is expanded (any file can still be named explicitly).
MEDIA_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .aiff .aif .wma .mp4 .m4v .mkv .mov .avi "
    ".mpg .mpeg .webm .ts .3gp .amr".split()
)
MANIFEST_EXTENSIONS = frozenset({".jsonl", ".json"})



_PATH_KEYS = ("path", "audio_filepath", "audio_path", "video_filepath", "file", "wav")
_REF_KEYS = ("reference", "text", "transcript", "ref")
_DURATION_KEYS = ("duration_s", "duration")
_OFFSET_KEYS = ("offset_s", "offset")


MAX_SECONDS = 1e7  # about 116 days: a longer offset or duration is a mistake, not a recording
MIN_DURATION_S = 1 / 16000  # one sample at the 16 kHz the models read: shorter spans hold none


def _seconds(obj: dict[str, Any], keys: tuple[str, ...], where: str,
             positive: bool = False) -> float | None:
    """A time in seconds from the first of `keys` present; ValueError naming the line if bad."""
    key = next((k for k in keys if obj.get(k) is not None), None)
    if key is None:
        return None
    value = obj[key]
    try:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError
        x = float(value)
    except (ValueError, OverflowError):  # an integer too large for a float overflows
        x = math.nan
    shown = json.dumps(value, ensure_ascii=False) if math.isfinite(x) or not isinstance(value, float) \
        else str(value).replace("inf", "Infinity").replace("nan", "NaN")
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    low = MIN_DURATION_S if positive else 0.0
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        limit = "more than 0" if positive else "0 or more"
        raise ValueError(f"{where}: {key} is {shown}, not a number of seconds ({limit}); "
                         "fix or remove that line")
    if x < low:
        raise ValueError(f"{where}: {key} is {shown} s, shorter than one sample at 16 kHz "
                         f"({low:.6f} s); give a longer span or remove that line")
    if x > MAX_SECONDS:
        raise ValueError(f"{where}: {key} is {shown} s, out of range (at most {MAX_SECONDS:g} s); "
                         "give it in seconds, or remove that line")
    return x


def _clock(x: float) -> str:
    return f"{x:.3f}".rstrip("0").rstrip(".")


def segment_id(name: str, offset_s: float, duration_s: float | None) -> str:
    """`NAME#t=START,END` in seconds (W3C Media Fragments), or `NAME#t=START` to the end."""
    end = "" if duration_s is None else f",{_clock(offset_s + duration_s)}"
    return f"{name}#t={_clock(offset_s)}{end}"


def _item_from_manifest(obj: dict[str, Any], base: Path, where: str) -> Item:
    """One manifest line: speechkit's own (`Item.to_dict`) or NeMo's `audio_filepath`/`text`/
    `duration`/`offset`, read by `Item.from_dict` once the NeMo names are mapped. Its id: the
    line's `id`, else its path as written (relative to the manifest), with `#t=START,END` when
    the line gives an offset (one segment of a file)."""
    if bad := _not_text(obj):
        return Item(id=where, path="", error=f"{where}: {bad}; fix or remove that line")
    path = next((obj[k] for k in _PATH_KEYS if isinstance(obj.get(k), str) and obj[k]), None)
    if path is None:
        return Item(id=str(obj.get("id") or where), path="", error=(
            f"{where}: no media path (expected one of {', '.join(_PATH_KEYS)}); add a \"path\" field"))
    written = os.path.expanduser(path)
    p = os.path.abspath(os.path.join(base, written))  # relative to the manifest, as in NeMo
    try:
        offset = _seconds(obj, _OFFSET_KEYS, where)
        duration = _seconds(obj, _DURATION_KEYS, where, positive=True)
    except ValueError as e:
        return Item(id=str(obj.get("id") or where), path=p, error=str(e))
    if obj.get("id") is not None and (isinstance(obj["id"], bool)
                                      or not isinstance(obj["id"], (str, int))):
        return Item(id=where, path=p, error=f"{where}: id is not text or a whole number; give "
                                            "each line a text \"id\", or leave it out")
    if obj.get("id") not in (None, ""):
        item_id = str(obj["id"])
    else:
        item_id = os.path.normpath(written)
        if offset is not None:
            item_id = segment_id(item_id, offset, duration)
    if bad := _typed_field_problem(obj):
        return Item(id=item_id, path=p, error=f"{where}: {bad}; fix or remove that line")
    languages = {}
    for key, value in (("language", obj.get("language") or obj.get("lang")),
                       ("target_language", obj.get("target_language"))):
        code = language_code(value) if isinstance(value, str) else None
        if value is not None and code is None:
            return Item(id=item_id, path=p, error=(
                f"{where}: {key} {value!r} is not a language Whisper knows; give a code or an "
                "English name (en, de, english), or remove it to detect the language"))
        languages[key] = code
    ref = next((obj[k] for k in _REF_KEYS if isinstance(obj.get(k), str)), None)
    taken = {"id", "language", "lang", "task", "prompt",
             *_PATH_KEYS, *_REF_KEYS, *_DURATION_KEYS, *_OFFSET_KEYS}
    line = {k: v for k, v in obj.items() if k not in taken}  # typed fields, meta, free-form keys
    line.update(id=item_id, path=written, reference=ref,
                language=languages["language"], duration_s=duration,
                offset_s=offset or 0.0, task=obj.get("task"), prompt=obj.get("prompt"))
    if languages["target_language"]:
        line["target_language"] = languages["target_language"]
    return Item.from_dict(line, base)


def _not_text(obj: dict[str, Any]) -> str | None:
    """Which key of a line holds a string that is not text: a lone UTF-16 surrogate written as
    a JSON escape ("\\ud800"). Escapes \\udc80-\\udcff stand for the bytes of a file name that
    is not UTF-8 (Python's surrogateescape) and are taken."""
    stack: list[tuple[str, Any]] = [(k, v) for k, v in obj.items()]
    while stack:
        key, value = stack.pop()
        for text in (key, value) if isinstance(value, str) else (key,):
            try:
                text.encode("utf-8", "surrogateescape")
            except UnicodeEncodeError as e:
                return f"{key.encode('utf-8', 'backslashreplace').decode()} holds " \
                       f"{text[e.start]!r}, a lone surrogate that is not text"
        if isinstance(value, dict):
            stack.extend((f"{key}.{k}", v) for k, v in value.items())
        elif isinstance(value, list):
            stack.extend((f"{key}[{i}]", v) for i, v in enumerate(value))
    return None


def _typed_field_problem(obj: dict[str, Any]) -> str | None:
    """What is wrong with a line's typed fields (a path that is not text, a list that is not
    a list of text), or None."""
    meta = obj.get("meta")
    if meta is not None and not isinstance(meta, dict):
        return "meta is not an object"
    typed = {_LEGACY_META[k]: v for k, v in (meta or {}).items() if k in _LEGACY_META} | obj
    for key in ("enroll", "target_language"):
        if typed.get(key) is not None and not isinstance(typed[key], str):
            return f"{key} is not text"
    for key in ("references", "choices"):
        value = typed.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return f"{key} is not a list of text"
    return None


def read_manifest(path: Path) -> list[Item]:
    """Items of a JSONL manifest. A bad line becomes an Item carrying its error, never a crash;
    so does a line whose id repeats an earlier line's (it is reported, not dropped)."""
    path = Path(path)
    require_regular_file(path, "manifest")
    items: list[Item] = []
    first_line: dict[str, int] = {}
    for lineno, obj, err in read_jsonl(path):
        where = f"{path.name}:{lineno}"
        if err:
            items.append(Item(id=where, path="", error=f"{where} {err}; fix or remove that line"))
            continue
        item = _item_from_manifest(obj, path.parent, where)
        item.source = where
        if not item.error and first_line.setdefault(item.id, lineno) != lineno:
            item = Item(id=where, path=item.path, reference=item.reference, error=(
                f"{where}: id {item.id!r} repeats line {first_line[item.id]}; give each line its "
                "own \"id\" (or its own offset) or remove the repeat"))
        items.append(item)
    return items


def write_manifest(items: Iterable[Item], path: Path) -> None:
    """Write items as a JSONL manifest that `read_manifest` reads back into the same items:
    media paths relative to the manifest's folder, typed fields as they are."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for it in items:
            fh.write(dumps_line(it.to_dict(path.parent)))


def _file_item(p: Path) -> Item:
    """A file named on the command line or found in a folder: its id is its absolute path,
    so ./a.wav, a.wav and /abs/a.wav are one item from any working directory."""
    s = os.fsdecode(os.path.abspath(p))
    return Item(id=s, path=s)


def _input_error(p: Path, message: str) -> Item:
    s = os.fsdecode(os.path.abspath(p))
    return Item(id=s, path=s, error=message)


def _walk_media(root: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Media files under `root` (links followed, each folder once) and the folders that could
    not be read, with the reason."""
    found: list[Path] = []
    unreadable: list[tuple[Path, str]] = []
    seen: set[tuple[int, int]] = set()
    stack = [root]
    while stack:
        folder = stack.pop()
        try:
            st = folder.stat()
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            with os.scandir(folder) as entries:
                listed = list(entries)
        except OSError as e:
            unreadable.append((folder, e.strerror or type(e).__name__))
            continue
        for entry in listed:
            try:
                is_dir = entry.is_dir()
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(Path(entry.path))
            elif os.path.splitext(entry.name)[1].lower() in MEDIA_EXTENSIONS:
                found.append(Path(entry.path))
    return sorted(found), unreadable


def _folder_items(raw: str, p: Path) -> list[Item]:
    found, unreadable = _walk_media(p)
    items = [_file_item(f) for f in found]
    items += [_input_error(d, f"{d}: cannot read this folder ({why}); make it readable or leave "
                              "it out") for d, why in unreadable]
    if not items:
        items.append(_input_error(p, f"{raw}: no media files in this folder (looked for "
                                     f"{', '.join(sorted(MEDIA_EXTENSIONS)[:6])}, ...)"))
    return items


def _expand_one(raw: str) -> list[Item]:
    p = Path(raw).expanduser()
    if p.is_dir():
        return _folder_items(raw, p)
    if p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
        return read_manifest(p)
    if p.exists() or os.path.lexists(p):
        return [_file_item(p)]  # not a regular file: its decode says so, the others still run
    if glob.has_magic(raw):
        matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
        files = [m for m in matches if not m.is_dir()]
        if not files:
            return [_input_error(p, f"{raw}: the pattern matches no files; check it")]
        return [_file_item(m) for m in files]
    # Keep going: the missing file gets an error line and the others still run.
    return [_input_error(p, f"{raw}: no such file; check the path")]


def expand_inputs(inputs: Iterable[str]) -> list[Item]:
    """Files, directories (recursive, media extensions only), glob patterns and manifests.

    An input that gives nothing (an empty folder, a pattern matching no file, a missing file)
    is an error item and the others still run. The same item named twice (a folder and a
    pattern over it) runs once; two different items with one id both stay, the second as an
    error item saying so.
    """
    items: list[Item] = []
    first: dict[str, Item] = {}
    repeats: dict[str, int] = {}
    for raw in inputs:
        for it in _expand_one(raw):
            seen = first.setdefault(it.id, it)
            if seen is it:
                items.append(it)
            elif seen != it:
                repeats[it.id] = n = repeats.get(it.id, 1) + 1
                items.append(Item(id=f"{it.id} (repeat {n})", path=it.path, error=(
                    f"{raw}: id {it.id!r} is already taken by another input ({seen.path}); give "
                    "manifest lines their own \"id\"")))
    return items


