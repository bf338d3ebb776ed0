"""The results file: one JSON line per item, appended and flushed as each item finishes.

- One writer at a time: a run holds an exclusive lock (`.NAME.lock` beside the file, removed
  when the run ends) from before the model loads until its last line is written.
- Resume: an id whose last line is "ok" is skipped, but only when that line was made by the
  same model (content hash, else source) and the same decode settings; otherwise the run stops
  before decoding and says to use `--overwrite` or another output path.
- `--overwrite` redoes the given items only and deletes nothing up front: their new lines are
  appended, the last line of an id wins, and when the run ends the file is rewritten with one
  line per id (also on open, after a killed run), so reruns do not make it grow.
- A torn last line left by a killed run is cut off when the file is opened again.
- Only a regular file (or a path where one can be created) takes results: not a folder, a
  device such as /dev/full, or a pipe.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from speechkit.data import Result, dumps_line, parse_json_line, parse_result
from speechkit.errors import SpeechkitError
from speechkit.journal import PieceJournal
from speechkit.staging import replace_file

REDO_HINT = "use --overwrite to redo them, or write to a new output path"


def output_file(path: str | Path) -> Path:
    """The real file results go to (links followed), its folder created if missing; a clear
    error for a folder, a device, a pipe or a path that cannot hold a file."""
    p = Path(path).expanduser()
    try:
        st = os.stat(p)
    except FileNotFoundError:
        real = Path(os.path.realpath(p))
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise SpeechkitError(f"{p}: cannot create its folder ({e.strerror}); choose an output "
                                 "path in a folder you can write to") from None
        return real
    except OSError as e:
        raise SpeechkitError(f"{p}: cannot hold results ({e.strerror}); choose another output "
                             "path") from None
    if stat.S_ISDIR(st.st_mode):
        raise SpeechkitError(f"{p} is a folder; results go to a file: pass a path such as "
                             f"{p / 'results.jsonl'}")
    if not stat.S_ISREG(st.st_mode):
        raise SpeechkitError(f"{p} is not a regular file (a device, pipe or socket); results go "
                             "to a file: pass a file path")
    real = Path(os.path.realpath(p))
    if not real.is_file():
        raise SpeechkitError(f"{p}: cannot tell which file it names; pass a plain file path")
    return real


def _lock(real: Path, shown: Path) -> int:
    """An exclusive lock on `.NAME.lock` beside the file; the open descriptor holds it."""
    lock = real.with_name(f".{real.name}.lock")
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise SpeechkitError(f"{shown}: cannot create the lock file {lock} ({e.strerror}); "
                                 "write results to a folder you can write to") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpeechkitError(f"another speechkit run is writing {shown}; wait for it to finish "
                                 "or use another output path") from None
        try:
            current = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            current = False
        if current:
            return fd
        os.close(fd)  # its holder removed it as we opened it: lock the next one


@contextlib.contextmanager
def locked(out: Path, inputs: Iterable[Path] = ()) -> Iterator[None]:
    """Hold the results-file lock of `out` (a file about to be rewritten) and of each input
    file read meanwhile (a file another run still appends to is refused, not read half-done).
    An input whose folder takes no lock file cannot have a writer either: it is read as is."""
    held: list[tuple[Path, int]] = []
    try:
        held.append((out, _lock(out, out)))
        for path in dict.fromkeys(Path(os.path.realpath(p)) for p in inputs):
            if path == out or not path.is_file():
                continue
            try:
                held.append((path, _lock(path, path)))
            except SpeechkitError:
                if os.access(path.parent, os.W_OK):
                    raise  # another run holds it
        yield
    finally:
        for path, fd in reversed(held):
            _unlock(path, fd)


def _unlock(real: Path, fd: int) -> None:
    try:
        os.unlink(real.with_name(f".{real.name}.lock"))
    finally:
        os.close(fd)  # after the unlink: a waiter that opened the old file sees it is gone


def _parse_line(raw: bytes) -> Result | None:
    obj, _ = parse_json_line(raw)
    return parse_result(obj) if obj is not None else None


def _repair_tail(real: Path) -> bytes:
    """The file's bytes, a torn last line (a killed run) cut off on disk first."""
    data = real.read_bytes() if real.exists() else b""
    if not data or data.endswith(b"\n"):
        return data
    cut = data.rfind(b"\n") + 1
    if _parse_line(data[cut:]) is not None:  # a whole line that only lacks its newline
        with open(real, "ab") as fh:
            fh.write(b"\n")
        return data + b"\n"
    os.truncate(real, cut)
    return data[:cut]


def _compact(real: Path, data: bytes) -> dict[str, Result]:
    """Rewrite the file with the last line of each id, when an id has several; returns the
    results by id."""
    lines = data.splitlines(keepends=True)
    parsed = [_parse_line(raw) for raw in lines]
    last = {r.id: i for i, r in enumerate(parsed) if r is not None}
    results = {r.id: r for r in parsed if r is not None}
    keep = [raw for i, (raw, r) in enumerate(zip(lines, parsed, strict=True))
            if r is None or last[r.id] == i]
    if len(keep) != len(lines):
        replace_file(real, keep)
    return results


def same_model(recorded: dict[str, Any] | None, current: dict[str, Any] | None) -> bool:
    """Whether two model records name the same weights: by sha256 where both have one,
    else by source (or name); the quantization and the engine must match too. The loaded
    model is checked again once its weights are in (a hub model's hash is known only then)."""
    if not recorded or not current:
        return False
    if recorded.get("sha256") and current.get("sha256"):
        if recorded["sha256"] != current["sha256"]:
            return False
    elif (recorded.get("source") or recorded.get("name")) != (current.get("source")
                                                               or current.get("name")):
        return False  # a hub model has no hash before it is downloaded: its source decides
    # Engines round differently: a result made by one is not reused by another. Results
    # written before engines were recorded came from torch.
    # A speech LLM's LoRA scaling (--lora-scale) changes its output; lines from before it
    # was recorded match any. Whisper's encoder window: lines from before it was recorded
    # (and every torch-engine line) were decoded on 30 s windows.
    return (recorded.get("quant") == current.get("quant")
            and recorded.get("engine", "torch") == current.get("engine", "torch")
            and recorded.get("encoder_window", "30s") == current.get("encoder_window", "30s")
            and recorded.get("lora_scaling", current.get("lora_scaling")) == current.get("lora_scaling"))


def model_label(d: dict[str, Any] | None) -> str:
    if not d:
        return "an unrecorded model"
    sha = d.get("sha256")
    how = "".join(f", {k} {d[k]}" for k in ("engine", "quant", "encoder_window") if d.get(k))
    return f"{d.get('name')} (sha256 {sha[:12]}{how})" if sha else str(d.get("source") or d.get("name"))


def reuse_conflict(r: Result, model: dict[str, Any] | None,
                   decode: dict[str, Any] | None) -> str | None:
    """Why a finished line cannot be reused by a run with this model and settings, or None."""
    if not same_model(r.model, model):
        return f"model {model_label(r.model)} and this run uses {model_label(model)}"
    old, new = r.decode or {}, decode or {}
    keys = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if keys:
        was = ", ".join(f"{k} {old.get(k)!r}" for k in keys)
        now = ", ".join(f"{k} {new.get(k)!r}" for k in keys)
        return f"{was} and this run asks for {now}"
    return None


def check_reuse(results: Iterable[Result], model: dict[str, Any] | None,
                decode: dict[str, Any] | None, where: str, hint: str = REDO_HINT) -> None:
    """Refuse finished lines made by another model or other settings (error lines are redone
    anyway and need no check)."""
    stale = [(r, why) for r in results if r.status == "ok"
             and (why := reuse_conflict(r, model, decode)) is not None]
    if stale:
        raise SpeechkitError(f"{where}: {len(stale)} finished item(s) were made with "
                             f"{stale[0][1]}; {hint}")


class ResultWriter:
    """Appends result lines and flushes each one; knows which ids are already done.

    Resume is the default: ids whose last line is "ok" are skipped on a rerun, failed ones are
    tried again. `overwrite=True` redoes every item it is given (other ids' lines stay).
    """

    def __init__(self, path: str | Path, overwrite: bool = False):
        self.path = Path(path)
        self.overwrite = overwrite
        self._real = output_file(self.path)
        self._lock_fd = _lock(self._real, self.path)
        try:
            self.previous = _compact(self._real, _repair_tail(self._real))
            self.pieces = PieceJournal(self._real)  # finished pieces of long files (journal.py)
            self._fh = open(self._real, "a", encoding="utf-8")
        except BaseException:
            _unlock(self._real, self._lock_fd)
            raise
        self._superseded = False  # an id got a second line: compact when the run ends

    def check_reuse(self, ids: Iterable[str], model: dict[str, Any] | None,
                    decode: dict[str, Any] | None) -> None:
        """Stop before decoding if a finished line of these ids came from another model or
        other settings (nothing to check when overwriting)."""
        if not self.overwrite:
            check_reuse((r for i in ids if (r := self.previous.get(i)) is not None), model,
                        decode, str(self.path))

    def done(self, item_id: str) -> bool:
        r = self.previous.get(item_id)
        return not self.overwrite and r is not None and r.status == "ok"

    def latest(self, item_id: str) -> Result | None:
        """The line an id has now (written by this run or found in the file)."""
        return self.previous.get(item_id)

    def write(self, result: Result) -> None:
        self._fh.write(dumps_line(result.to_dict()))
        self._fh.flush()
        self._superseded |= result.id in self.previous
        self.previous[result.id] = result

    def close(self) -> None:
        if self._fh.closed:
            return
        try:
            self._fh.close()
            if self._superseded:
                _compact(self._real, self._real.read_bytes())
            self.pieces.close({i for i, r in self.previous.items() if r.status == "ok"})
        finally:
            _unlock(self._real, self._lock_fd)

    def __enter__(self) -> ResultWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
