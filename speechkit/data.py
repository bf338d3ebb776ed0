"""Records that flow through speechkit (Item in, Result out) and their JSON lines.

Results are one JSON object per line (`speechkit.results` writes them), so a crash keeps
every finished line and a rerun resumes. Where items come from (files, folders, globs,
manifests) is `speechkit.inputs`.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from speechkit import strict_json
from speechkit.errors import SpeechkitError


@dataclass
class Item:
    """One input: a media file (or a span of it) plus what the protocols need to score it."""

    id: str
    path: str
    reference: str | None = None
    language: str | None = None
    duration_s: float | None = None  # decode only this long a span (NeMo's `duration`)
    offset_s: float = 0.0  # seconds into the file where the span starts
    task: str | None = None
    prompt: str | None = None
    references: list[str] | None = None  # all references when there are several (captions)
    label: str | int | None = None  # class label (ER) or trial label (SV: 1 target, 0 not)
    enroll: str | None = None  # the enrollment recording of a verification trial
    choices: list[str] | None = None  # the options of a multiple-choice question (SQA)
    target_language: str | None = None  # the language to translate into (ST)
    meta: dict[str, Any] = field(default_factory=dict)  # free-form: anything else a line holds
    error: str | None = None  # set when the item could not even be read (bad manifest line)
    # Where it was read ("list.jsonl:7"), named in its error line: set on the instance by
    # read_manifest, not a field (no part of the record, its manifest line or its equality).
    source: ClassVar[str | None] = None

    def to_dict(self, base: Path | None = None) -> dict[str, Any]:
        """A manifest line; with `base` (the manifest's folder) its media paths are relative to it."""
        d = {k: v for k, v in asdict(self).items() if v not in (None, {}) or k in ("id", "path")}
        if base is not None:
            for key in _MEDIA_FIELDS:
                if d.get(key):
                    d[key] = os.path.relpath(os.path.abspath(d[key]), os.path.abspath(base))
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Path | None = None) -> Item:
        """The Item of a `to_dict` line; with `base` its relative media paths resolve against
        it. Keys that are not fields go to `meta`, as do `meta`'s own keys."""
        known = {f.name for f in fields(cls)}
        meta = dict(d.get("meta") or {})
        meta.update({k: v for k, v in d.items() if k not in known})
        kw = {k: v for k, v in d.items() if k in known and k != "meta"}
        for old, key in _LEGACY_META.items():  # lines written before these were fields
            if old in meta and kw.get(key) is None:
                kw[key] = meta.pop(old)
        if base is not None:
            for key in _MEDIA_FIELDS:
                if kw.get(key):
                    kw[key] = os.path.abspath(os.path.join(base, os.path.expanduser(kw[key])))
        return cls(**kw, meta=meta)


_MEDIA_FIELDS = ("path", "enroll")  # written relative to the manifest's folder
# meta keys of older manifests that are typed fields now
_LEGACY_META = {"enroll_path": "enroll", "references": "references", "label": "label",
                "choices": "choices", "target_language": "target_language"}


@dataclass
class Word:
    word: str
    start: float  # seconds from the start of the item
    end: float
    probability: float | None = None  # mean probability of its tokens (as openai-whisper's)


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

        words = None if self.words is None else [Word(w.word, at(w.start), at(w.end), w.probability)
                                                 for w in self.words]
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
    require_regular_file(Path(path), what.removesuffix(" file"))  # a FIFO would block forever
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SpeechkitError(f"{path}: not a valid JSON {what} ({e})") from None
    except RecursionError:
        raise SpeechkitError(f"{path}: not a valid JSON {what} (nests deeper than Python's JSON "
                             "reader goes); fix the file") from None
    except ValueError as e:  # an integer of more than 4300 digits
        raise SpeechkitError(f"{path}: not a valid JSON {what} ({str(e).partition(':')[0]})") from None
    if not isinstance(data, dict) or _too_deep(data):
        raise SpeechkitError(f"{path}: a {what} holds one JSON object, nested at most "
                             f"{MAX_JSON_DEPTH} levels")
    return data


MAX_JSON_DEPTH = 64  # nesting levels a line may hold: records are a few levels deep


def read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any] | None, str | None]]:
    """Yield (line number, object or None, error or None); blank lines are skipped. Whatever a
    line holds (not JSON, nested without end, numbers past any limit) is that line's error."""
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            obj, err = parse_json_line(raw)
            yield lineno, obj, err


def parse_json_line(raw: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """One JSONL line as (object, None), or (None, what is wrong with it)."""
    try:
        obj = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        return None, "is not UTF-8 text"
    except json.JSONDecodeError as e:
        return None, f"is not valid JSON ({e.msg} at column {e.colno})"
    except RecursionError:
        return None, f"nests deeper than {MAX_JSON_DEPTH} levels"
    except ValueError as e:  # an integer of more than 4300 digits
        return None, f"is not valid JSON ({str(e).partition(':')[0]})"
    if not isinstance(obj, dict):
        return None, "is not a JSON object"
    if _too_deep(obj):  # later copies and writes of the record would recurse that deep
        return None, f"nests deeper than {MAX_JSON_DEPTH} levels"
    return obj, None


def _too_deep(obj: Any) -> bool:
    """Whether `obj` nests lists and objects more than MAX_JSON_DEPTH levels (no recursion)."""
    stack = [(obj, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return True
        children = value.values() if isinstance(value, dict) else value
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


def require_regular_file(path: Path, what: str) -> None:
    """Only regular files are read: a FIFO would block forever, a device never ends."""
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise SpeechkitError(f"{path}: not a regular file (a folder, device, pipe or socket); "
                             f"pass the {what} file itself")


# --- results ----------------------------------------------------------------------------------


def parse_result(obj: dict[str, Any]) -> Result | None:
    """A result line's record, or None when it is not one (no id, wrong fields)."""
    if "id" not in obj:
        return None
    try:
        return Result.from_dict({**obj, "id": str(obj["id"])})
    except (TypeError, ValueError):
        return None


def read_results(path: Path) -> dict[str, Result]:
    """Results of a JSONL file by id; a later line for an id replaces an earlier one.

    Unparseable lines (a crash in mid-write) are skipped: the item simply runs again.
    """
    out: dict[str, Result] = {}
    if not Path(path).exists():
        return out
    require_regular_file(Path(path), "results")
    for _, obj, err in read_jsonl(Path(path)):
        if not err and (r := parse_result(obj)) is not None:
            out[r.id] = r
    return out
