"""Where a converted or new checkpoint is written: an `--out` that would delete an input or
cannot be written is refused before any work, and the checkpoint is built in a staging folder
that replaces `--out` only once it is complete."""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from speechkit.errors import SpeechkitError
from speechkit.staging import new_staging_dir, replace_dir, settle_modes


def check_new_output(out: Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> None:
    """Refuse an `out` that is, or holds, one of the `inputs` (with --force writing it would
    delete them), a file, a place no folder can be made, or a non-empty directory unless
    asked to replace it."""
    if not str(out) or str(out) == ".":
        raise SpeechkitError("--out is empty or the current folder; name a new folder for the "
                             "checkpoint, e.g. --out ckpt/converted")
    for given in inputs:
        if given is None or not str(given):
            continue
        source = Path(given).expanduser()
        if not (source.exists() or source.is_symlink()):
            continue  # a built-in name or hub id: nothing of it lies in --out
        if _holds(out, source):
            raise SpeechkitError(f"--out {out} is or holds the input {given}: writing the "
                                 "checkpoint there would delete it; pick another --out")
    if out.exists() and not out.is_dir():
        raise SpeechkitError(f"--out {out} is a file; --out names the checkpoint directory to "
                             "write (a new or empty folder)")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise SpeechkitError(f"{out} exists and is not empty; pick a new --out or pass --force")
    above = out.absolute().parent
    while not above.exists():
        above = above.parent
    if not above.is_dir():
        raise SpeechkitError(f"--out {out}: {above} is a file, so no folder can be made there; "
                             "pick an --out in a folder")
    if not os.access(above, os.W_OK | os.X_OK):
        raise SpeechkitError(f"--out {out}: {above} is not writable; pick an --out in a folder "
                             "you can write to")


def _holds(out: Path, source: Path) -> bool:
    """Whether `source` (or the file a link names) is `out` or lies inside it."""
    target = out.expanduser().resolve()
    for path in {source.absolute(), source.resolve()}:
        if path == target or target in path.parents:
            return True
    return False


@contextlib.contextmanager
def staged_directory(out: Path) -> Iterator[Path]:
    """A staging folder beside `out` to write a checkpoint into; when the block finishes, it
    replaces `out` (renames), and when it fails, it is removed and `out` is left as it was.
    Staging folders that killed runs left for the same `out` are removed first."""
    try:
        tmp = new_staging_dir(out)
    except OSError as e:
        raise SpeechkitError(f"--out {out}: cannot write a folder beside it ({e.strerror}); pick "
                             "an --out in a folder you can write to") from None
    try:
        yield tmp
        settle_modes(tmp)
        replace_dir(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
