"""Records that flow through speechkit (Item in, Result out) and the resumable JSONL writer.

Items come from files, directories, glob patterns and manifests (speechkit's own JSONL schema
or NeMo-style `audio_filepath`/`text`/`duration` lines). Results are one JSON object per line,
flushed as each item finishes, so a crash keeps every finished line and a rerun resumes.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from speechkit import strict_json
from speechkit.errors import SpeechkitError

# Extensions taken when a directory is expanded (any file can still be named explicitly).
MEDIA_EXTENSIONS = frozenset(
    ".wav .flac .mp3 .m4a .aac .ogg .oga .opus .aiff .aif .wma .mp4 .m4v .mkv .mov .avi "
    ".mpg .mpeg .webm .ts .3gp .amr".split()
)
MANIFEST_EXTENSIONS = frozenset({".jsonl", ".json"})


@dataclass
class Item:
    """One input: a media file (or a span of it) plus whatever the manifest says about it."""

    id: str
    path: str
    reference: str | None = None
    language: str | None = None
    duration_s: float | None = None
    offset_s: float = 0.0
    task: str | None = None
    prompt: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # set when the item could not even be read (bad manifest line)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, {}) or k in ("id", "path")}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Item:
        known = {f.name for f in fields(cls)}
        meta = dict(d.get("meta") or {})
        meta.update({k: v for k, v in d.items() if k not in known})
        return cls(**{k: v for k, v in d.items() if k in known and k != "meta"}, meta=meta)


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the item
    end: float


@dataclass
class Segment:
    start: float  # seconds from the start of the item
    end: float
    text: str
    words: list[Word] | None = None  # with --word-timestamps

    def __post_init__(self) -> None:
        if self.words is not None:
            self.words = [w if isinstance(w, Word) else Word(**w) for w in self.words]

    def shifted(self, seconds: float, limit: float) -> Segment:
        """This segment moved later by `seconds`, its times capped at `limit`."""
        def at(t: float) -> float:
            return round(min(t + seconds, limit), 3)

        words = None if self.words is None else [Word(w.word, at(w.start), at(w.end)) for w in self.words]
        return Segment(at(self.start), at(self.end), self.text, words)


@dataclass
class Result:
    """One output line. `status` is "ok" or "error"; an error line says what to do in `error`."""

    id: str
    path: str
    status: str = "ok"
    task: str | None = None
    language: str | None = None
    text: str = ""
    segments: list[Segment] = field(default_factory=list)
    duration_s: float | None = None
    reference: str | None = None
    model: dict[str, Any] | None = None
    decode: dict[str, Any] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Result:
        known = {f.name for f in fields(cls)}
        kw = {k: v for k, v in d.items() if k in known}
        kw["segments"] = [s if isinstance(s, Segment) else Segment(**s) for s in d.get("segments") or []]
        return cls(**kw)

    @classmethod
    def failed(cls, item: Item, message: str, **kw: Any) -> Result:
        return cls(id=item.id, path=item.path, status="error", error=message,
                   reference=item.reference, duration_s=item.duration_s, **kw)


def dumps_line(obj: dict[str, Any]) -> str:
    """One strict JSON line (see strict_json). Non-UTF-8 file names (lone surrogates) become
    JSON \\u escapes."""
    text = strict_json.dumps(obj)
    return text.encode("utf-8", "backslashreplace").decode("utf-8") + "\n"


def read_json_object(path: Path, what: str) -> dict[str, Any]:
    """A JSON file holding one object; anything else is a user error naming the file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpeechkitError(f"{path}: not a valid JSON {what} ({e})") from None
    if not isinstance(data, dict):
        raise SpeechkitError(f"{path}: a {what} holds one JSON object")
    return data


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, object or None, error or None); blank lines are skipped."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError:
                yield lineno, None, "is not UTF-8 text"
                continue
            except json.JSONDecodeError as e:
                yield lineno, None, f"is not valid JSON ({e.msg} at column {e.colno})"
                continue
            if not isinstance(obj, dict):
                yield lineno, None, "is not a JSON object"
                continue
            yield lineno, obj, None


# --- inputs -----------------------------------------------------------------------------------

_PATH_KEYS = ("path", "audio_filepath", "audio_path", "video_filepath", "file", "wav")
_REF_KEYS = ("reference", "text", "transcript", "ref")
_DURATION_KEYS = ("duration_s", "duration")


def _item_from_manifest(obj: dict[str, Any], base: Path, where: str) -> Item:
    path = next((obj[k] for k in _PATH_KEYS if isinstance(obj.get(k), str) and obj[k]), None)
    if path is None:
        return Item(id=str(obj.get("id") or where), path="", error=(
            f"{where}: no media path (expected one of {', '.join(_PATH_KEYS)}); add a \"path\" field"))
    p = Path(path).expanduser()
    if not p.is_absolute():
        p = base / p  # relative paths are relative to the manifest, as in NeMo
    ref = next((obj[k] for k in _REF_KEYS if isinstance(obj.get(k), str)), None)
    dur = next((obj[k] for k in _DURATION_KEYS if isinstance(obj.get(k), (int, float))), None)
    taken = {"id", "language", "lang", "offset", "offset_s", "task", "prompt",
             *_PATH_KEYS, *_REF_KEYS, *_DURATION_KEYS}
    return Item(
        id=str(obj.get("id") or p),
        path=str(p),
        reference=ref,
        language=obj.get("language") or obj.get("lang"),
        duration_s=float(dur) if dur is not None else None,
        offset_s=float(obj.get("offset_s") or obj.get("offset") or 0.0),
        task=obj.get("task"),
        prompt=obj.get("prompt"),
        meta={k: v for k, v in obj.items() if k not in taken},
    )


def read_manifest(path: Path) -> list[Item]:
    """Items of a JSONL manifest. A bad line becomes an Item carrying its error, never a crash."""
    path = Path(path)
    items: list[Item] = []
    for lineno, obj, err in read_jsonl(path):
        where = f"{path.name}:{lineno}"
        if err:
            items.append(Item(id=where, path="", error=f"{where} {err}; fix or remove that line"))
        else:
            items.append(_item_from_manifest(obj, path.parent, where))
    return items


def _file_item(p: Path) -> Item:
    s = os.fsdecode(os.path.abspath(p))
    return Item(id=s, path=s)


def expand_inputs(inputs: Iterable[str]) -> list[Item]:
    """Files, directories (recursive, media extensions only), glob patterns and manifests."""
    items: list[Item] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in MEDIA_EXTENSIONS)
            if not found:
                raise SpeechkitError(f"{raw}: no media files found in this directory "
                                     f"(looked for {', '.join(sorted(MEDIA_EXTENSIONS)[:6])}, ...)")
            items.extend(_file_item(f) for f in found)
        elif p.suffix.lower() in MANIFEST_EXTENSIONS and p.is_file():
            items.extend(read_manifest(p))
        elif p.exists() or os.path.lexists(p):
            items.append(_file_item(p))
        elif glob.has_magic(raw):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(raw), recursive=True))
            files = [m for m in matches if m.is_file()]
            if not files:
                raise SpeechkitError(f"{raw}: the pattern matches no files")
            items.extend(_file_item(m) for m in files)
        else:
            # Keep going: the missing file gets an error line and the others still run.
            s = os.fsdecode(os.path.abspath(p))
            items.append(Item(id=s, path=s, error=f"{raw}: no such file; check the path"))
    seen: set[str] = set()
    unique = []
    for it in items:
        if it.id not in seen:
            seen.add(it.id)
            unique.append(it)
    return unique


# --- results ----------------------------------------------------------------------------------


def read_results(path: Path) -> dict[str, Result]:
    """Results of a JSONL file by id; a later line for an id replaces an earlier one.

    Unparseable lines (a crash in mid-write) are skipped: the item simply runs again.
    """
    out: dict[str, Result] = {}
    if not Path(path).exists():
        return out
    for _, obj, err in read_jsonl(Path(path)):
        if err or "id" not in obj:
            continue
        try:
            out[str(obj["id"])] = Result.from_dict(obj)
        except TypeError:
            continue
    return out


class ResultWriter:
    """Appends result lines and flushes each one; knows which ids are already done.

    Resume is the default: ids whose last line is "ok" are skipped on a rerun, failed ones are
    tried again. `overwrite=True` starts the file afresh.
    """

    def __init__(self, path: Path, overwrite: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if overwrite and self.path.exists():
            self.path.unlink()
        self.previous = read_results(self.path)
        self._fh = open(self.path, "a", encoding="utf-8")
        if self._fh.tell() > 0 and not self._ends_with_newline():
            self._fh.write("\n")  # a crash left half a line: start clean after it

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    def done(self, item_id: str) -> bool:
        r = self.previous.get(item_id)
        return r is not None and r.status == "ok"

    def write(self, result: Result) -> None:
        self._fh.write(dumps_line(result.to_dict()))
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
