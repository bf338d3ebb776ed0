"""Staging: a directory or file is written beside its target and renamed into place.

A staging folder's name carries the id of the process writing it (`.NAME.staging-PID-XXXX`),
so a later run can tell one left by a killed process (its process is gone) from one being
written now, and remove it. A target being replaced is first renamed aside
(`.NAME.replaced-PID-XXXX`); a run killed between the two renames leaves the old target there,
and the next run puts it back.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

STAGING = "staging"  # a folder being written
REPLACED = "replaced"  # the previous target, renamed aside while the new one moves in


def new_staging_dir(out: Path) -> Path:
    """A fresh staging folder beside `out` (same file system: the final rename is atomic),
    after removing the stale ones that killed runs left for the same target."""
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.{STAGING}-{os.getpid()}-", dir=out.parent))
    tmp.chmod(0o777 & ~current_umask())  # mkdtemp makes it private (0700); the target is not
    return tmp


def settle_modes(folder: Path) -> None:
    """Give a staged folder's files the modes the umask gives any new file (0644 under 022):
    some writers (safetensors) make theirs private (0600)."""
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        if not path.is_symlink():
            path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def current_umask() -> int:
    """The process umask (read without changing it where /proc allows: threads may be
    creating files meanwhile)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def replace_dir(tmp: Path, out: Path) -> None:
    """Rename `tmp` to `out`; an existing `out` is renamed aside first and removed after."""
    if not out.exists() and not out.is_symlink():
        os.replace(tmp, out)
        return
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.{REPLACED}-{os.getpid()}-", dir=out.parent))
    os.replace(out, aside / out.name)
    os.replace(tmp, out)
    shutil.rmtree(aside, ignore_errors=True)


def clean_stale(out: Path) -> list[Path]:
    """Remove the staging folders of `out` whose writing process is gone (a run killed while
    converting), restoring a replaced target that a killed run left aside. Returns those removed."""
    removed = []
    try:
        entries = list(out.parent.iterdir())
    except OSError:
        return removed
    for entry in entries:
        kind, pid = _staging_owner(entry.name, out.name)
        if kind is None or process_alive(pid):
            continue
        old = entry / out.name
        if kind == REPLACED and (old.exists() or old.is_symlink()) and not out.exists():
            os.replace(old, out)  # killed between the renames: the previous target comes back
        shutil.rmtree(entry, ignore_errors=True)
        removed.append(entry)
    return removed


def _staging_owner(name: str, target: str) -> tuple[str | None, int]:
    for kind in (STAGING, REPLACED):
        prefix = f".{target}.{kind}-"
        if name.startswith(prefix):
            pid, _, _ = name[len(prefix):].partition("-")
            if pid.isdigit():
                return kind, int(pid)
    return None, 0


def process_alive(pid: int) -> bool:
    """Whether process `pid` (this one included) is running on this machine."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def replace_file(path: Path, lines: list[bytes]) -> None:
    """Rewrite `path` with `lines` atomically: readers and a crash see the old file or the new
    one, never a mix (written beside it, synced, its permissions kept, renamed over it)."""
    tmp = path.with_name(f".{path.name}.rewrite")
    with open(tmp, "wb") as fh:
        fh.writelines(lines)
        fh.flush()
        os.fsync(fh.fileno())
    if path.exists():
        shutil.copymode(path, tmp)
    os.replace(tmp, path)
