"""Throughput, accuracy and memory of `speechkit transcribe` against faster-whisper.

Same Whisper base weights, same files, same machine, one run. Each configuration runs in its
own process, `--repeats` times, round-robin (a drifting machine load hits every
configuration alike); the median is reported. The wall time is the whole process: Python
start, imports, model load, file decoding and transcription, as a user waits for it.

    python benchmarks/transcribe.py                       # dev set + LibriVox test clips
    python benchmarks/transcribe.py --data my_manifest.jsonl --repeats 5
    python benchmarks/transcribe.py --long 210 --repeats 1    # long-form: see below

faster-whisper is imported from this environment, or from `--faster-whisper-path DIR` (or
$FASTER_WHISPER_PATH), a folder put on the faster-whisper workers' PYTHONPATH, e.g. one made
with `pip install --target DIR faster-whisper==1.2.1`.

Long-form (`--long SECONDS`): `--recordings` files of about SECONDS each, every one the clips
shuffled with its own seed (`--seed` + k), repeated as needed and joined with pauses of
0.5-3 s, decoded with and without `--language en`, greedy and beam 5, against faster-whisper
with its long-form defaults (condition_on_previous_text=True, cpu_threads = cores).

RTFx = total audio seconds / wall seconds. CPU s = user + system seconds of the process (on a
shared machine the steadier figure). WER is corpus-level after the Whisper English
normalizer. The ratio compares each speechkit row with faster-whisper int8 at the same beam.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))  # clipsets, peer

ALL_CORES = str(os.cpu_count() or 1)
SK, FW = {"tool": "speechkit"}, {"tool": "faster-whisper", "compute_type": "int8"}
CONFIGS = {  # speechkit rows: transcribe's options; faster-whisper rows: its defaults, beam 1 or 5
    "speechkit (defaults)": SK,
    "speechkit --dtype float32": {**SK, "dtype": "float32"},
    "speechkit --engine torch": {**SK, "engine": "torch"},
    f"speechkit --engine torch --threads {ALL_CORES}": {**SK, "engine": "torch",
                                                        "threads": int(ALL_CORES)},
    "faster-whisper int8": FW,
    "faster-whisper float32": {**FW, "compute_type": "float32"},
    "speechkit --beam-size 5": {**SK, "beam_size": 5},
    "faster-whisper int8 beam 5": {**FW, "beam_size": 5},
    "faster-whisper float32 beam 5": {**FW, "compute_type": "float32", "beam_size": 5},
    # long-form: each (beam, language) pair has a row of both tools
    "speechkit --language en": {**SK, "language": "en"},
    "faster-whisper int8 --language en": {**FW, "language": "en"},
    "speechkit --beam-size 5 --language en": {**SK, "beam_size": 5, "language": "en"},
    "faster-whisper int8 beam 5 --language en": {**FW, "beam_size": 5, "language": "en"},
    "faster-whisper int8 workers": {**FW, "mode": "workers"},  # num_workers = cores
    "faster-whisper int8 batched": {**FW, "mode": "batched"},  # BatchedInferencePipeline
    "speechkit --encoder-window 30s": {**SK, "encoder_window": "30s"},
    "speechkit --condition-on-previous-text": {**SK, "condition": True},
    "speechkit --beam-size 5 --condition-on-previous-text": {**SK, "beam_size": 5,
                                                             "condition": True},
}
DEFAULT_CONFIGS = ",".join(list(CONFIGS)[:9])
LONG_CONFIGS = ",".join(["speechkit (defaults)", "faster-whisper int8", "speechkit --language en",
                         "faster-whisper int8 --language en", "speechkit --beam-size 5",
                         "faster-whisper int8 beam 5", "speechkit --beam-size 5 --language en",
                         "faster-whisper int8 beam 5 --language en"])
SET_CONFIGS = ("speechkit (defaults),faster-whisper int8,faster-whisper int8 workers,"
               "faster-whisper int8 batched")
PAUSE_S = (0.5, 3.0)  # s; silence drawn between two joined clips (long-form recordings)


def default_items(folder: Path) -> list[dict]:
    """English clips with references: the dev set (when present), pocketsphinx-testdata's
    LibriVox and cards recordings (benchmarks/clipsets.py)."""
    from clipsets import clip_sets

    return [it for items in clip_sets(["dev", "librivox", "cards"], folder).values() for it in items]


def load_items(data: str | None, folder: Path) -> list[dict]:
    if data is None:
        return default_items(folder)
    from speechkit.inputs import expand_inputs

    return [{"path": it.path, "reference": it.reference or ""} for it in expand_inputs([data])]


def join_items(items: list[dict], seconds: float, folder: Path, recordings: int = 3,
               seed: int = 0) -> list[dict]:
    """`recordings` 16 kHz files of about `seconds` each (long-form transcription: several VAD
    pieces a file). Recording k holds the clips shuffled with seed `seed + k`, repeated as
    needed, with PAUSE_S silences between them; its reference is theirs joined the same way."""
    import random

    import numpy as np

    from speechkit.media.ffmpeg import decode_audio
    from speechkit.media.wav import write_wav

    audio = [decode_audio(it["path"]) for it in items]
    out = []
    for k in range(recordings):
        rng = random.Random(seed + k)
        parts, refs, length = [], [], 0.0
        while length < seconds:
            order = list(range(len(items)))
            rng.shuffle(order)
            for i in order:
                if length >= seconds:
                    break
                pause = np.zeros(int(rng.uniform(*PAUSE_S) * 16000), dtype=np.float32)
                parts += [pause, audio[i]]
                refs.append(items[i]["reference"])
                length += (len(pause) + len(audio[i])) / 16000
        path = write_wav(folder / f"long{k}.wav", np.concatenate(parts))
        out.append({"path": str(path), "reference": " ".join(refs)})
    return out


def machine() -> str:
    """CPU model, cores and the math threads speechkit uses: figures belong to their machine."""
    from speechkit.threads import available_cores, cpu_model, resolve_threads

    threads = resolve_threads()
    return (f"{cpu_model()}; {os.cpu_count()} cores ({available_cores()} usable); speechkit threads "
            f"{threads} (on CTranslate2: {threads} one-thread replicas; a one-file run: 1 replica); "
            f"load average {os.getloadavg()[0]:.1f} at the start")


def run_speechkit(cfg: dict, items: list[dict], batch_size: int) -> dict:
    """What `speechkit transcribe` does (its heap policy, threads sized to the run, model
    loaded in the run)."""
    from speechkit.heap import keep_freed_memory

    keep_freed_memory()
    from rich.console import Console

    from speechkit.data import Item, read_results
    from speechkit.models.base import DecodeOptions
    from speechkit.models.registry import RuntimeOptions
    from speechkit.transcribe import transcribe_to_jsonl

    runtime = RuntimeOptions(device="cpu", dtype=cfg.get("dtype", "auto"),
                             engine=cfg.get("engine", "auto"), threads=cfg.get("threads"),
                             encoder_window=cfg.get("encoder_window", "short"))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        quiet = Console(file=open(os.devnull, "w"))  # noqa: SIM115
        transcribe_to_jsonl([Item(id=it["path"], path=it["path"]) for it in items], "whisper-base",
                            DecodeOptions(beam_size=cfg.get("beam_size"), language=cfg.get("language"),
                                          condition_on_previous_text=cfg.get("condition")),
                            out, runtime=runtime,
                            batch_size=batch_size or None, console=quiet, progress=False)
        res = read_results(out)
    return {"texts": {k: r.text for k, r in res.items()},
            "audio_s": sum(r.duration_s or 0 for r in res.values()),
            "fallback_windows": sum(r.extras.get("fallback_windows", 0) for r in res.values()),
            "threads": next(iter(res.values())).model["runtime"]["threads"]}


def run_faster_whisper(cfg: dict, items: list[dict], batch_size: int) -> dict:
    """faster-whisper as `cfg["mode"]` says (benchmarks/peer.py): sequential with cpu_threads =
    cores by default; long files with its long-form defaults."""
    from peer import run_faster_whisper as run

    from speechkit.models.builtins import ct2_int8_dir, ct2_model_dir

    int8 = os.environ.get(PEER_WEIGHTS_ENV) == "int8" and cfg.get("compute_type", "int8") == "int8"
    return run(cfg, items, str((ct2_int8_dir if int8 else ct2_model_dir)("whisper-base")))


PEER_WEIGHTS_ENV = "SPEECHKIT_BENCH_PEER_WEIGHTS"  # --peer-weights, passed to its processes


def worker(name: str, data: str | None, batch_size: int) -> None:
    """Run one configuration in this process and print its figures as JSON."""
    items = json.loads(Path(data).read_text())
    cfg = CONFIGS[name]
    fn = run_speechkit if cfg["tool"] == "speechkit" else run_faster_whisper
    out = fn(cfg, items, batch_size)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("RESULT " + json.dumps(out))


def wer(items: list[dict], texts: dict[str, str]) -> float:
    import jiwer
    from whisper_normalizer.english import EnglishTextNormalizer

    norm = EnglishTextNormalizer()
    refs = [norm(it["reference"]) for it in items]
    hyps = [norm(texts.get(it["path"], "")) for it in items]
    keep = [i for i, r in enumerate(refs) if r.strip()]
    if not keep:  # a folder without references: speed and memory only
        return float("nan")
    return 100 * jiwer.wer([refs[i] for i in keep], [hyps[i] for i in keep])


def median_s(items: list[dict]) -> float:
    """The median file length: the short-clip target is for folders whose median is < 10 s."""
    from speechkit.media.ffmpeg import probe

    return statistics.median(probe(it["path"]).duration_s or 0.0 for it in items) if items else 0.0


def run_once(name: str, listing: Path, batch_size: int, fw_path: str | None = None) -> dict | None:
    """One configuration in a fresh process: whole-process wall and CPU seconds, peak RSS.
    faster-whisper's process gets `fw_path` on its PYTHONPATH."""
    cmd = [sys.executable, __file__, "--worker", name, "--batch-size", str(batch_size),
           "--data", str(listing)]
    env = dict(os.environ)
    if fw_path and CONFIGS[name]["tool"] == "faster-whisper":
        env["PYTHONPATH"] = os.pathsep.join(p for p in (fw_path, env.get("PYTHONPATH")) if p)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        print(f"{name}: failed\n{proc.stderr[-2000:]}")
        return None
    out = json.loads(line[7:])
    out["wall_s"] = wall
    out["cpu_s"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return out


def peer_of(name: str) -> str:
    """The faster-whisper int8 row with the same beam and language as `name`."""
    cfg = CONFIGS[name]
    beam = cfg.get("beam_size") or 1
    return ("faster-whisper int8" + (f" beam {beam}" if beam > 1 else "")
            + (f" --language {cfg['language']}" if cfg.get("language") else ""))


def table(items: list[dict], runs: dict[str, list[dict]]) -> list[str]:
    """The printed table: medians, and each speechkit row's WER and speed against the
    faster-whisper int8 row of the same beam and language; with several long recordings,
    each one's WER too."""
    rows = {}
    for name, rs in runs.items():
        if rs:
            wall = statistics.median(r["wall_s"] for r in rs)
            rows[name] = {"wer": wer(items, rs[0]["texts"]), "wall": wall,
                          "cpu": statistics.median(r["cpu_s"] for r in rs),
                          "rtfx": rs[0]["audio_s"] / wall,
                          "rss": max(r["peak_rss_mb"] for r in rs),
                          "each": [wer([it], rs[0]["texts"]) for it in items]}
    each = 1 < len(items) <= 8
    lines = ["| configuration | WER % | " + ("WER % per recording | " if each else "")
             + "wall s | CPU s | RTFx | peak RSS MB | faster-whisper WER % | speed vs faster-whisper |",
             "|---|---:|" + ("---|" if each else "") + "---:|---:|---:|---:|---:|---:|"]
    for name, r in rows.items():
        peer = rows.get(peer_of(name)) if name.startswith("speechkit") else None
        ratio = f"{r['rtfx'] / peer['rtfx']:.2f}x" if peer else ""
        peer_wer = f"{peer['wer']:.2f}" if peer else ""
        per = " / ".join(f"{w:.2f}" for w in r["each"]) + " | " if each else ""
        lines.append(f"| {name} | {r['wer']:.2f} | {per}{r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{r['rtfx']:.2f} | {r['rss']:.0f} | {peer_wer} | {ratio} |")
    return lines


def _figures(items: list[dict], rs: list[dict]) -> dict:
    wall = statistics.median(r["wall_s"] for r in rs)
    return {"wer": wer(items, rs[0]["texts"]), "rtfx": rs[0]["audio_s"] / wall,
            "rss": max(r["peak_rss_mb"] for r in rs), "audio": rs[0]["audio_s"],
            "fb": rs[0].get("fallback_windows", 0), "win": rs[0].get("windows", 0)}


def sets_table(sets: dict[str, list[dict]], runs: dict[str, dict[str, list[dict]]]) -> list[str]:
    """A row per clip set: speechkit's defaults against the fastest faster-whisper row, with
    the windows that fell back to sampling (the usual reason a set is slow per audio second)."""
    lines = ["| clip set | files | audio s | median clip s | speechkit WER % | RTFx | peak RSS MB "
             "| fallback windows | fastest faster-whisper | its WER % | RTFx | peak RSS MB "
             "| fallback / windows | speed ratio |", "|---|---:|---:|---:|---:|---:|---:|---:|---|"
             "---:|---:|---:|---:|---:|"]
    for name, items in sets.items():
        got = {c: _figures(items, rs) for c, rs in runs[name].items() if rs}
        sk = got.get("speechkit (defaults)")
        peers = {c: f for c, f in got.items() if c.startswith("faster-whisper")}
        if sk is None or not peers:
            lines.append(f"| {name} | {len(items)} | (a configuration failed) |")
            continue
        best = max(peers, key=lambda c: peers[c]["rtfx"])
        fw = peers[best]
        lines.append(
            f"| {name} | {len(items)} | {sk['audio']:.1f} | {median_s(items):.1f} | {sk['wer']:.2f} "
            f"| {sk['rtfx']:.2f} | {sk['rss']:.0f} | {sk['fb']} | {best.removeprefix('faster-whisper ')} "
            f"| {fw['wer']:.2f} | {fw['rtfx']:.2f} | {fw['rss']:.0f} | {fw['fb']} / {fw['win']} "
            f"| {sk['rtfx'] / fw['rtfx']:.2f}x |")
    return lines


def run_sets(names: list[str], set_names: list[str], args, tmp: Path) -> None:
    """Every configuration on every clip set, round-robin over repeats, one table."""
    from clipsets import clip_sets

    sets = clip_sets(set_names, tmp / "sets")
    listings = {}
    for name, items in sets.items():
        listings[name] = tmp / f"{name}.json"
        listings[name].write_text(json.dumps(items))
    runs = {s: {c: [] for c in names} for s in sets}
    for _ in range(args.repeats):
        for s in sets:
            for c in names:
                if (r := run_once(c, listings[s], args.batch_size, args.faster_whisper_path)):
                    runs[s][c].append(r)
                    print(f"  {s} / {c}: {r['wall_s']:.1f} s wall", file=sys.stderr, flush=True)
    print(f"medians of {args.repeats} runs (whole process); Whisper base, greedy")
    print("\n".join(sets_table(sets, runs)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder, glob or manifest with references (default: dev set "
                                   "+ pocketsphinx-testdata)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=0, help="speechkit's; 0 = its default")
    ap.add_argument("--configs", help="comma list of: " + ", ".join(CONFIGS)
                    + f" (default: {DEFAULT_CONFIGS}; with --long: {LONG_CONFIGS})")
    ap.add_argument("--long", type=float, metavar="SECONDS",
                    help="join the clips into --recordings files of about this many seconds, "
                         "with pauses, first")
    ap.add_argument("--recordings", type=int, default=3, help="with --long: how many files")
    ap.add_argument("--seed", type=int, default=0, help="with --long: file k shuffles with seed+k")
    ap.add_argument("--faster-whisper-path", default=os.environ.get("FASTER_WHISPER_PATH"),
                    help="a folder holding faster-whisper, put on its PYTHONPATH "
                         "(default: $FASTER_WHISPER_PATH, else this environment)")
    ap.add_argument("--sets", help="comma list of clip sets (benchmarks/clipsets.py: librivox, "
                                   "cards, espeak, dev): a row per set, speechkit against the "
                                   f"fastest faster-whisper (default configs: {SET_CONFIGS})")
    ap.add_argument("--peer-weights", choices=("float16", "int8"), default="float16",
                    help="the model.bin faster-whisper loads: float16, the files it publishes and "
                         "quantizes while loading (default), or int8, the file speechkit loads")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    os.environ[PEER_WEIGHTS_ENV] = args.peer_weights
    if args.worker:
        return worker(args.worker, args.data, args.batch_size)
    tmp = Path(tempfile.mkdtemp(prefix="speechkit-bench-"))
    if args.sets:
        print(f"machine: {machine()}; faster-whisper loads the {args.peer_weights} model.bin")
        names = [c.strip() for c in (args.configs or SET_CONFIGS).split(",") if c.strip()]
        return run_sets(names, args.sets.split(","), args, tmp)
    items = load_items(args.data, tmp)
    if args.long:
        items = join_items(items, args.long, tmp, args.recordings, args.seed)
    listing = tmp / "items.json"
    listing.write_text(json.dumps(items))
    configs = args.configs or (LONG_CONFIGS if args.long else DEFAULT_CONFIGS)
    names = [c.strip() for c in configs.split(",") if c.strip()]
    if unknown := [n for n in names if n not in CONFIGS]:
        ap.error(f"unknown configuration(s) {unknown}; choose from {', '.join(CONFIGS)}")
    print(f"machine: {machine()}; faster-whisper loads the {args.peer_weights} model.bin")
    runs: dict[str, list[dict]] = {name: [] for name in names}
    for _ in range(args.repeats):  # round-robin
        for name in names:
            if (r := run_once(name, listing, args.batch_size, args.faster_whisper_path)) is not None:
                runs[name].append(r)
                print(f"  {name}: {r['wall_s']:.1f} s wall, {r['cpu_s']:.1f} s CPU", file=sys.stderr,
                      flush=True)
    audio = next((rs[0]["audio_s"] for rs in runs.values() if rs), 0.0)
    print(f"{len(items)} files, {audio:.1f} s of audio (median file {median_s(items):.1f} s); "
          f"medians of {args.repeats} runs (whole process); Whisper base")
    print("\n".join(table(items, runs)))


if __name__ == "__main__":
    main()
