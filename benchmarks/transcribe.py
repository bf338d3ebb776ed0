"""Throughput, accuracy and memory of `speechkit transcribe` against faster-whisper.

Same Whisper base weights, same files, same machine, one run. Each configuration runs in its
own process (so peak RSS is its own) and `--repeats` times; the median wall time is reported.

    python benchmarks/transcribe.py                       # dev set + LibriVox test clips
    python benchmarks/transcribe.py --data my_manifest.jsonl --repeats 5
    python benchmarks/transcribe.py --long 75          # the same clips joined into ~75 s files

RTFx = total audio seconds / wall seconds (file decoding included for every tool). WER is
corpus-level after the Whisper English normalizer.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = ROOT.parent / "shared" / "data" / "dev"

CONFIGS = {
    "speechkit fp32": {"tool": "speechkit", "dtype": "float32"},
    "speechkit int8": {"tool": "speechkit", "dtype": "int8"},
    "speechkit fp32 beam 5": {"tool": "speechkit", "dtype": "float32", "beam_size": 5},
    "faster-whisper int8": {"tool": "faster-whisper", "compute_type": "int8"},
    "faster-whisper fp32": {"tool": "faster-whisper", "compute_type": "float32"},
    "faster-whisper int8 batched": {"tool": "faster-whisper-batched", "compute_type": "int8"},
    "faster-whisper int8 beam 5": {"tool": "faster-whisper", "compute_type": "int8", "beam_size": 5},
}


def default_items() -> list[dict]:
    """English clips with references: the dev set (when present) and pocketsphinx-testdata."""
    items = []
    if (DEV / "manifest.jsonl").is_file():
        for line in (DEV / "manifest.jsonl").read_text().splitlines():
            rec = json.loads(line)
            if rec["task"] == "asr" and rec.get("language") == "en":
                items.append({"path": str(DEV / rec["path"]), "reference": rec["reference"]})
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import pocketsphinx_dir

    ps = pocketsphinx_dir()
    if ps:
        for sub, trans in (("librivox", "transcription"), ("cards", "cards.transcription")):
            for line in (ps / sub / trans).read_text().splitlines():
                m = re.match(r"<s> (.*) </s> \((.*)\)", line.strip())
                if m:
                    name = Path(m.group(2)).name
                    items.append({"path": str(ps / sub / f"{name}.wav"),
                                  "reference": " ".join(m.group(1).split())})
    return items


def load_items(data: str | None) -> list[dict]:
    if data is None:
        return default_items()
    from speechkit.inputs import expand_inputs

    return [{"path": it.path, "reference": it.reference or ""} for it in expand_inputs([data])]


def join_items(items: list[dict], seconds: float, folder: Path) -> list[dict]:
    """The clips decoded and concatenated, in order, into 16 kHz files of about `seconds` each
    (long-form transcription: several VAD pieces a file); references joined the same way."""
    import wave

    import numpy as np

    from speechkit.media.ffmpeg import decode_audio

    groups: list[list[tuple[dict, np.ndarray]]] = [[]]
    length = 0.0
    for it in items:
        if length >= seconds:
            groups.append([])
            length = 0.0
        audio = decode_audio(it["path"])
        groups[-1].append((it, audio))
        length += len(audio) / 16000
    out = []
    for k, group in enumerate(groups):
        path = folder / f"long{k}.wav"
        pcm = np.concatenate([a for _, a in group])
        with wave.open(str(path), "wb") as w:
            w.setnchannels(1)
            w.setsampwidth(2)
            w.setframerate(16000)
            w.writeframes((np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes())
        out.append({"path": str(path), "reference": " ".join(it["reference"] for it, _ in group)})
    return out


def machine() -> str:
    """CPU model, cores and the torch threads a run uses: figures belong to their machine."""
    import os

    import torch

    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}; {os.cpu_count()} cores; torch threads {torch.get_num_threads()}"


def run_speechkit(cfg: dict, items: list[dict], batch_size: int) -> dict[str, str]:
    from speechkit.data import Item, read_results
    from speechkit.models.base import DecodeOptions
    from speechkit.models.registry import RuntimeOptions, load_model
    from speechkit.transcribe import transcribe_items

    model = load_model("whisper-base", RuntimeOptions(device="cpu", dtype=cfg["dtype"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "r.jsonl"
        t0 = time.perf_counter()
        transcribe_items([Item(id=it["path"], path=it["path"]) for it in items], model,
                         DecodeOptions(beam_size=cfg.get("beam_size")), out, batch_size=batch_size)
        wall = time.perf_counter() - t0
        res = read_results(out)
    return {"wall_s": wall, "texts": {k: r.text for k, r in res.items()},
            "audio_s": sum(r.duration_s or 0 for r in res.values())}


def run_faster_whisper(cfg: dict, items: list[dict], batch_size: int) -> dict:
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio

    from speechkit.models.builtins import ct2_model_dir

    model = WhisperModel(str(ct2_model_dir("whisper-base")), device="cpu",
                         compute_type=cfg["compute_type"], cpu_threads=0)
    batched = BatchedInferencePipeline(model) if cfg["tool"] == "faster-whisper-batched" else None
    texts, audio_s = {}, 0.0
    t0 = time.perf_counter()
    for it in items:
        audio = decode_audio(it["path"])
        audio_s += len(audio) / 16000
        if batched:
            segs, _ = batched.transcribe(audio, batch_size=batch_size, beam_size=cfg.get("beam_size", 1))
        else:
            long = len(audio) > 30 * 16000  # long-form: faster-whisper's own defaults but greedy
            segs, _ = model.transcribe(audio, beam_size=cfg.get("beam_size", 1), vad_filter=False,
                                       condition_on_previous_text=long)
        texts[it["path"]] = "".join(s.text for s in segs).strip()
    return {"wall_s": time.perf_counter() - t0, "texts": texts, "audio_s": audio_s}


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", help="folder, glob or manifest with references (default: dev set "
                                   "+ pocketsphinx-testdata)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--configs", default=",".join(CONFIGS), help="comma list of " + ", ".join(CONFIGS))
    ap.add_argument("--long", type=float, metavar="SECONDS",
                    help="join the clips into files of about this many seconds first")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.worker, args.data, args.batch_size)
    tmp = Path(tempfile.mkdtemp(prefix="speechkit-bench-"))
    items = load_items(args.data)
    if args.long:
        items = join_items(items, args.long, tmp)
    listing = tmp / "items.json"
    listing.write_text(json.dumps(items))
    print(f"machine: {machine()}")
    print(f"{len(items)} files; {args.repeats} runs per configuration; batch size {args.batch_size}")
    rows = {}
    for name in [c.strip() for c in args.configs.split(",") if c.strip()]:
        runs = []
        for _ in range(args.repeats):
            cmd = [sys.executable, __file__, "--worker", name, "--batch-size", str(args.batch_size),
                   "--data", str(listing)]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
            if line is None:
                print(f"{name}: failed\n{proc.stderr[-2000:]}")
                break
            runs.append(json.loads(line[7:]))
        if not runs:
            continue
        wall = statistics.median(r["wall_s"] for r in runs)
        audio = runs[0]["audio_s"]
        rows[name] = {"wer": wer(items, runs[0]["texts"]), "wall_s": wall, "audio_s": audio,
                      "rtfx": audio / wall, "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
                      "walls": [round(r["wall_s"], 2) for r in runs]}
    print(f"\n{'configuration':<30}{'WER %':>8}{'audio s':>9}{'wall s':>8}{'RTFx':>7}"
          f"{'peak RSS MB':>13}  runs (wall s)")
    for name, r in rows.items():
        print(f"{name:<30}{r['wer']:>8.2f}{r['audio_s']:>9.1f}{r['wall_s']:>8.2f}{r['rtfx']:>7.2f}"
              f"{r['peak_rss_mb']:>13.0f}  {r['walls']}")
    base = rows.get("faster-whisper int8")
    if base:
        print()
        for name, r in rows.items():
            if name.startswith("speechkit"):
                print(f"{name} / faster-whisper int8: RTFx ratio {r['rtfx'] / base['rtfx']:.2f}x, "
                      f"WER {r['wer'] - base['wer']:+.2f} points")


if __name__ == "__main__":
    main()
