"""Throughput of `--runner ray` against the single-process runner, by the number of workers.

Each configuration runs in its own process, `--repeats` times, round-robin; the median is
reported. Two wall times: the whole process (Python start, imports, the cluster's start, model
loads, decoding and transcription, as a user waits for it) and the run itself (the loop:
for Ray, from the cluster being up to the last line written, worker start and model loads
included; for the local runner, after its model load).

    python benchmarks/scale.py                          # dev set + LibriVox clips, 1 and 2 workers
    python benchmarks/scale.py --data clips/ --workers 1,2,4 --repeats 3
    python benchmarks/scale.py --device cuda --gpus-per-worker 1 --workers 1,2   # on GPUs

RTFx = audio seconds / wall seconds. "vs local" compares each row's whole-process wall time
with the single-process run: above 1x the Ray run is faster, below 1x its overhead shows.
Ray workers on CPU here are sized by `--workers` (the CPUs are split between them); a local
cluster sized to the machine is started for each run.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from transcribe import default_items, machine  # noqa: E402  (benchmarks/transcribe.py)


def run_config(name: str, listing: Path, args: argparse.Namespace) -> None:
    """One configuration in this process; prints its figures as JSON."""
    from speechkit.data import Item
    from speechkit.models.base import DecodeOptions
    from speechkit.models.registry import RuntimeOptions
    from speechkit.scale import ScaleOptions
    from speechkit.transcribe import transcribe_to_jsonl

    items = [Item(id=str(i), path=it["path"])
             for i, it in enumerate(json.loads(listing.read_text()))]
    workers = None if name == "local" else int(name.split("-")[1])
    scale = ScaleOptions("ray", workers=workers, gpus_per_worker=args.gpus_per_worker) if workers \
        else ScaleOptions()
    with tempfile.TemporaryDirectory() as tmp:
        s = transcribe_to_jsonl(items, args.model, DecodeOptions(), Path(tmp) / "r.jsonl",
                                runtime=RuntimeOptions(device=args.device), progress=False,
                                batch_size=args.batch_size or None, scale=scale)
    print("RESULT " + json.dumps({"ok": s.ok, "failed": s.failed, "audio_s": s.audio_s,
                                  "run_s": s.wall_s, "load_s": s.load_s,
                                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def run_once(name: str, listing: Path, args: argparse.Namespace) -> dict | None:
    cmd = [sys.executable, __file__, "--config", name, "--listing", str(listing),
           "--model", args.model, "--device", args.device, "--batch-size", str(args.batch_size)]
    if args.gpus_per_worker is not None:
        cmd += ["--gpus-per-worker", str(args.gpus_per_worker)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(f"{name}: failed\n{proc.stderr[-2000:]}", file=sys.stderr)
        return None
    return json.loads(line[7:]) | {"wall_s": wall}


def table(runs: dict[str, list[dict]]) -> list[str]:
    lines = ["| runner | files | audio s | process wall s | run wall s | RTFx (process) | "
             "vs local |", "|---|---:|---:|---:|---:|---:|---:|"]
    base = statistics.median(r["wall_s"] for r in runs["local"]) if runs.get("local") else None
    for name, rs in runs.items():
        if not rs:
            continue
        wall = statistics.median(r["wall_s"] for r in rs)
        run = statistics.median(r["run_s"] for r in rs)
        audio = rs[0]["audio_s"]
        label = "local (one process)" if name == "local" else f"ray, {name.split('-')[1]} worker(s)"
        vs = f"{base / wall:.2f}x" if base else ""
        lines.append(f"| {label} | {rs[0]['ok']} | {audio:.1f} | {wall:.1f} | {run:.1f} | "
                     f"{audio / wall:.2f} | {vs} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder, glob or manifest (default: dev set + pocketsphinx-testdata)")
    ap.add_argument("--limit", type=int, default=0, help="only the first N files")
    ap.add_argument("--workers", default="1,2", help="comma list of Ray worker counts")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--model", default="whisper-base")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gpus-per-worker", type=float, default=None)
    ap.add_argument("--batch-size", type=int, default=0)
    ap.add_argument("--config", help=argparse.SUPPRESS)
    ap.add_argument("--listing", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.config:
        return run_config(args.config, Path(args.listing), args)
    if args.data:
        from speechkit.inputs import expand_inputs

        items = [{"path": it.path} for it in expand_inputs([args.data])]
    else:
        items = default_items()
    items = items[:args.limit] if args.limit else items
    names = ["local", *(f"ray-{n}" for n in args.workers.split(","))]
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "items.json"
        listing.write_text(json.dumps(items))
        runs: dict[str, list[dict]] = {n: [] for n in names}
        for _ in range(args.repeats):
            for n in names:
                if (r := run_once(n, listing, args)) is not None:
                    runs[n].append(r)
    print(f"{len(items)} files, model {args.model} on {args.device}")
    print("\n".join(table(runs)))


if __name__ == "__main__":
    main()
