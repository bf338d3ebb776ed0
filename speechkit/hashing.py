"""Content digests that identify model files in results and score records."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """sha256 of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def dir_sha256(directory: str | Path, suffixes: tuple[str, ...] | None = None) -> str:
    """One sha256 over a directory's files (relative path and content, sorted), so two
    copies of the same checkpoint agree wherever they live. `suffixes` limits the files."""
    root = Path(directory)
    h = hashlib.sha256()
    for p in sorted(q for q in root.rglob("*") if q.is_file()):
        if suffixes and not p.name.endswith(suffixes):
            continue
        h.update(p.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        h.update(file_sha256(p).encode("ascii"))
    return h.hexdigest()
