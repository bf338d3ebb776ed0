"""faster-whisper at its strongest for the machine, the peer the speed benchmarks compare with.

Three ways it can run a folder of files, each as its documentation describes:

- `seq`: one model, the files one after another, `cpu_threads` = the usable cores;
- `workers`: `num_workers` = cores and as many Python threads calling `transcribe`, each model
  worker on one thread (its documented way to use several cores on many files);
- `batched`: its `BatchedInferencePipeline` (VAD pieces of a file decoded as one batch).

The ratio in the tables is against the fastest of those that ran. Each run also counts the
30 s windows decoded and how many fell back to sampling (a window decoded again at a higher
temperature costs several decodes): the usual reason one set is slower per audio second.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

MODES = ("seq", "workers", "batched")
BATCHED_BATCH_SIZE = 8  # faster-whisper's README example for BatchedInferencePipeline


def _decode(model, audio, cfg: dict) -> tuple[str, int, int]:
    """One file: its text, the windows decoded and those that fell back to sampling."""
    long = len(audio) > 30 * 16000
    kw = {"beam_size": cfg.get("beam_size", 1), "language": cfg.get("language")}
    if cfg.get("mode") == "batched":
        segs, _ = model.transcribe(audio, batch_size=BATCHED_BATCH_SIZE, **kw)
    else:  # its defaults (condition_on_previous_text on), VAD off as in its own benchmarks
        segs, _ = model.transcribe(audio, vad_filter=False, condition_on_previous_text=long, **kw)
    segs = list(segs)
    windows = {s.seek for s in segs}
    fallback = {s.seek for s in segs if getattr(s, "temperature", 0.0)}
    return "".join(s.text for s in segs).strip(), max(len(windows), 1), len(fallback)


def run_faster_whisper(cfg: dict, items: list[dict], model_dir: str) -> dict:
    """Transcribe `items` ({"path"}) as `cfg["mode"]` says; texts by path, audio seconds and
    the window counts."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.audio import decode_audio

    from speechkit.threads import available_cores

    n, mode = available_cores(), cfg.get("mode", "seq")
    workers = n if mode == "workers" else 1
    model = WhisperModel(model_dir, device="cpu", compute_type=cfg.get("compute_type", "int8"),
                         cpu_threads=1 if mode == "workers" else n, num_workers=workers)
    runner = BatchedInferencePipeline(model) if mode == "batched" else model

    def one(it: dict) -> tuple[str, float, str, int, int]:
        audio = decode_audio(it["path"])
        return (it["path"], len(audio) / 16000, *_decode(runner, audio, cfg))

    with ThreadPoolExecutor(workers) as pool:
        done = list(pool.map(one, items))
    return {"texts": {p: t for p, _, t, _, _ in done}, "audio_s": sum(d for _, d, *_ in done),
            "windows": sum(w for *_, w, _ in done), "fallback_windows": sum(f for *_, f in done),
            "threads": f"{workers} worker(s) x {1 if mode == 'workers' else n} thread(s)"}
