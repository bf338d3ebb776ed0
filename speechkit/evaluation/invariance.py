"""Batch invariance: decode a seeded sample of a run's items again one at a time and name
every item whose text differs from the text the run stored.

A model whose output depends on what else is in its batch (padding leaking into attention,
batch-dependent kernels, a cache shared across rows) gives different scores at different
batch sizes; this check proves, item by item, that it does not. The one-at-a-time results
go to `batch-invariance.jsonl` in the run directory (redone on every check) and the outcome
into scores.json under `batch_invariance`, which `speechkit compare` gates on.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from speechkit.data import Item, Result, read_results
from speechkit.errors import SpeechkitError

INVARIANCE_FILE = "batch-invariance.jsonl"
SAMPLE_SEED = 0  # the same items are drawn on every check of the same run


def sample_ids(ids: Sequence[str], n: int, seed: int = SAMPLE_SEED) -> list[str]:
    """`n` of the ids drawn with a seeded generator (all of them when n >= their number),
    in id order; the draw depends on the ids only, not on the order they came in."""
    if n < 1:
        raise SpeechkitError(f"--check-batch-invariance {n}: give a positive number of items")
    pool = sorted(set(ids))
    return sorted(random.Random(seed).sample(pool, min(n, len(pool))))


def _batch_size(records: Sequence[Result]) -> int | None:
    """The batch size the stored lines say they were decoded with."""
    for r in records:
        runtime = (r.model or {}).get("runtime") if isinstance(r.model, dict) else None
        if isinstance(runtime, dict) and runtime.get("batch_size"):
            return int(runtime["batch_size"])
    return None


def differences(stored: dict[str, Result], alone: dict[str, Result],
                ids: Sequence[str]) -> tuple[list[dict[str, str]], list[str]]:
    """(items whose text differs: id, batched text, one-at-a-time text), (ids whose one-at-a-time
    decode failed or is absent)."""
    diffs, failed = [], []
    for i in ids:
        again = alone.get(i)
        if again is None or again.status != "ok":
            failed.append(i)
        elif again.text != stored[i].text:
            diffs.append({"id": i, "batched": stored[i].text, "alone": again.text})
    return diffs, failed


def check_batch_invariance(predictions: Path, items: Sequence[Item], model: Any, options: Any,
                           n: int, *, runtime: Any, console: Any = None,
                           progress: bool = False, seed: int = SAMPLE_SEED) -> dict[str, Any]:
    """Decode `n` sampled finished items of `predictions` again with batch size 1 and compare.

    Returns the record scores.json keeps: how many were checked, the seed, the batch size the
    stored lines used, every differing item with both texts, and the items that failed."""
    from speechkit.transcribe import transcribe_to_jsonl

    wanted = {it.id for it in items}
    stored = {i: r for i, r in read_results(predictions).items()
              if i in wanted and r.status == "ok"} if predictions.exists() else {}
    ids = sample_ids(list(stored), n, seed) if stored else []
    path = predictions.parent / INVARIANCE_FILE
    if ids:
        chosen = set(ids)
        transcribe_to_jsonl([it for it in items if it.id in chosen], model, options, path,
                            runtime=runtime, batch_size=1, overwrite=True, console=console,
                            progress=progress, label="decoding one at a time",
                            title="batch invariance")
    alone = read_results(path) if ids else {}
    diffs, failed = differences(stored, alone, ids)
    return {"checked": len(ids), "requested": n, "seed": seed,
            "batch_size": _batch_size([stored[i] for i in ids]), "alone_batch_size": 1,
            "differing": len(diffs), "differences": diffs, "failed": failed,
            "file": str(path) if ids else None}


def invariance_warnings(check: dict[str, Any]) -> list[str]:
    """One warning per kind of trouble the check found."""
    out = []
    if check["differing"]:
        names = ", ".join(d["id"] for d in check["differences"][:10])
        out.append(f"batch invariance: {check['differing']} of {check['checked']} item(s) decoded "
                   f"one at a time differ from the batch size {check['batch_size']} run: {names}")
    if check["failed"]:
        out.append(f"batch invariance: {len(check['failed'])} item(s) failed when decoded one "
                   f"at a time: {', '.join(check['failed'][:10])}")
    if not check["checked"]:
        out.append("batch invariance: no finished item to check")
    return out
