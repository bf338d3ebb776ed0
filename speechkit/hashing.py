"""Content digests that identify model files in results and score records."""

from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20
# What transformers reads from a model directory: weights, configs, vocabularies, templates.
MODEL_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model", ".jinja", ".tiktoken")
TOKENIZER_SUFFIXES = (".json", ".txt", ".model", ".jinja", ".tiktoken")


def file_sha256(path: str | Path) -> str:
    """sha256 of one file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def dir_sha256(directory: str | Path, suffixes: tuple[str, ...] | None = None,
               recursive: bool = True) -> str:
    """One sha256 over a directory's files (relative path and content, sorted), so two
    copies of the same checkpoint agree wherever they live. `suffixes` limits the files;
    `recursive=False` takes the top level only (what transformers reads)."""
    root = Path(directory)
    h = hashlib.sha256()
    found = root.rglob("*") if recursive else root.iterdir()
    for p in sorted(q for q in found if q.is_file()):
        if suffixes and not p.name.endswith(suffixes):
            continue
        h.update(p.relative_to(root).as_posix().encode("utf-8", "surrogateescape") + b"\0")
        h.update(file_sha256(p).encode("ascii"))
    return h.hexdigest()
