"""Sharded bench runs: a run without --shard takes in the shards' finished lines and their
speed, so the merged run decodes only what no shard did."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from speechkit.data import read_results
from speechkit.results import ResultWriter, check_reuse

if TYPE_CHECKING:
    from speechkit.evaluation.bench import BenchPlan

SHARD_FILE = re.compile(r"predictions\.shard-(\d+)-of-(\d+)\.jsonl$")


def absorb_shards(plan_: BenchPlan, writer: ResultWriter, model: dict[str, Any]) -> int:
    """Copy finished lines of shard files into the unsharded predictions file (once each).

    Returns how many lines were taken in. Only ids of this run's items are taken, and only
    from shards made by this model with these settings: another's lines stop the run.
    """
    if plan_.shard is not None:
        return 0
    wanted = {it.id for it in plan_.items}
    shard_files = sorted(p for p in plan_.out_dir.glob("predictions.shard-*.jsonl")
                         if SHARD_FILE.search(p.name))
    taken = 0
    for path in shard_files:
        finished = [r for i, r in read_results(path).items() if i in wanted and r.status == "ok"]
        check_reuse(finished, model, plan_.options.to_dict(), str(path),
                    "run that shard again with this model and settings (--overwrite), or use "
                    "another --out-dir")
        for result in finished:
            if not writer.done(result.id):
                writer.write(result)
                taken += 1
    return taken


def previous_speed(path: Path) -> dict[str, Any] | None:
    """The speed record of an earlier scores file, if it has one."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("run", {}).get("speed")
    except (OSError, ValueError, AttributeError):
        return None


def shard_speed(plan_: BenchPlan) -> dict[str, Any] | None:
    """Speed of a merged run: total audio over total wall time of its shards."""
    if plan_.shard is not None:
        return None
    parts = [sp for p in sorted(plan_.out_dir.glob("scores.shard-*.json"))
             if (sp := previous_speed(p))]
    if not parts:
        return None
    audio = sum(p["audio_s"] for p in parts)
    wall = sum(p["wall_s"] for p in parts)
    gpu = [p["peak_gpu_mb"] for p in parts if p.get("peak_gpu_mb") is not None]
    return {"audio_s": round(audio, 3), "wall_s": round(wall, 3),
            "rtfx": round(audio / wall, 3) if wall else None,
            "peak_rss_mb": max(p["peak_rss_mb"] for p in parts),
            "peak_gpu_mb": max(gpu) if gpu else None,
            "items_decoded": sum(p.get("items_decoded", 0) for p in parts),
            "from_shards": len(parts)}
