"""Lip-crop throughput: frames per second, per CPU core, beside real time (25 frames/s).

Every configuration crops the same videos (the development set's two talking-face clips by
default, each `--copies` times) with the cache off, so the figures are the full pipeline:
ffmpeg decoding, face detection and landmarks, smoothing, alignment and cropping.

    python benchmarks/lips.py      # dlib: detection every frame vs every 5th; 1 and 2 workers
    python benchmarks/lips.py --videos a.mp4 b.mp4 --repeats 3

frames/s = frames cropped / wall seconds; per core = frames / CPU seconds (user + system of
this process and its workers): what one fully busy core does. x real time = frames/s / 25.
The backend is loaded before the clock starts (about a second per process).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DEV = ROOT.parent / "shared" / "data" / "dev" / "avsr"
REAL_TIME_FPS = 25.0


def machine() -> str:
    """CPU model, cores and threads: figures belong to their machine."""
    from speechkit.media.lips.pool import default_workers

    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    per_core = ""
    if info.get("siblings", "").isdigit() and info.get("cpu cores", "").isdigit():
        per_core = f", {int(info['siblings']) // max(1, int(info['cpu cores']))} threads per core"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (f"{info.get('model name', 'unknown CPU')}; {os.cpu_count()} logical cores ({usable} "
            f"usable{per_core}); crop workers by default {default_workers()}; "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def cpu_seconds() -> float:
    """User + system seconds of this process, its live children (the crop workers) and the
    children each has waited for (the ffmpeg decoders)."""
    import psutil

    me = psutil.Process()
    total = sum(me.cpu_times()[:4])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:4])
        except psutil.NoSuchProcess:
            pass
    return total


def run_inline(videos: list[Path], backend: str, detect_every: int) -> int:
    """One process, one clip after another; returns the frames cropped."""
    from speechkit.media.lips import track
    from speechkit.media.lips.stream import compute_crops

    track.DETECT_EVERY = detect_every
    return sum(len(compute_crops(v, backend=backend).crops) for v in videos)


def run_pool(videos: list[Path], backend: str, workers: int) -> int:
    """The runner's way: clips handed to crop worker processes from threads."""
    from speechkit.media.lips.pool import CropPool

    with CropPool(workers) as pool, ThreadPoolExecutor(workers * 2) as threads:
        pool.lip_stream(videos[0], backend=backend, cache=False)  # start and load the workers
        t0, c0 = time.perf_counter(), cpu_seconds()
        done = list(threads.map(lambda v: pool.lip_stream(v, backend=backend, cache=False), videos))
        run_pool.timing = (time.perf_counter() - t0, cpu_seconds() - c0)
    return sum(len(s.frames) for s in done)


def measure(name: str, videos: list[Path], backend: str) -> tuple[int, float, float]:
    """(frames, wall s, CPU s) of one configuration."""
    kind, value = name.split("=")
    if kind == "workers":
        frames = run_pool(videos, backend, int(value))
        return (frames, *run_pool.timing)
    t0, c0 = time.perf_counter(), cpu_seconds()
    frames = run_inline(videos, backend, int(value))
    return frames, time.perf_counter() - t0, cpu_seconds() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--videos", nargs="*", type=Path, help="default: the dev set's avsr clips")
    ap.add_argument("--copies", type=int, default=2, help="each video this many times")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--backend", default="dlib")
    ap.add_argument("--configs", default="detect_every=1,detect_every=5,workers=1,workers=2",
                    help="detect_every=N (one process) or workers=N (crop worker processes)")
    args = ap.parse_args()
    videos = args.videos or sorted(p for p in DEV.glob("*") if p.suffix in (".mp4", ".mpg"))
    if not videos:
        ap.error(f"no videos: pass --videos (the dev set is not at {DEV})")
    videos = [v for v in videos for _ in range(args.copies)]
    from speechkit.media.lips.stream import _backend

    _backend(args.backend)  # loaded before the clock starts
    print(f"machine: {machine()}")
    print(f"{len(videos)} clips, backend {args.backend}, cache off; medians of {args.repeats}")
    print("| configuration | frames | wall s | CPU s | frames/s | frames/s per core | x real time |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        runs = [measure(name, videos, args.backend) for _ in range(args.repeats)]
        frames = runs[0][0]
        wall = statistics.median(r[1] for r in runs)
        cpu = statistics.median(r[2] for r in runs)
        print(f"| {name} | {frames} | {wall:.2f} | {cpu:.2f} | {frames / wall:.1f} | "
              f"{frames / cpu:.1f} | {frames / wall / REAL_TIME_FPS:.1f} |", flush=True)


if __name__ == "__main__":
    main()
