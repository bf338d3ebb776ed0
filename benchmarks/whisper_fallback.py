"""CPU seconds of one clip's Whisper decoding on both engines, temperature fallback included.

A clip whose text fails the checks at every temperature is the slow case: a repetition loop
runs to --max-new-tokens at each temperature, 5 candidates at each one above 0. Both engines
load once; the clip is decoded `--repeats` times on each, alternately, and the median CPU
seconds (user + system of this process, steadier than wall time on a shared machine) are
reported with the median wall seconds and the decoding's temperature and text; on the torch
engine also the decoder passes of a run and the wall ms per pass. `torch-no-drafts` is the
torch engine with repetition-loop drafts off (one pass a token, as before them), so the
ratio of the two is measured in the same run.

    python benchmarks/whisper_fallback.py clip.wav --task translate
    python benchmarks/whisper_fallback.py clip.wav --task translate --language fr --threads 1
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import time

from speechkit.media.ffmpeg import decode_audio
from speechkit.models.base import DecodeOptions, audio_inputs
from speechkit.models.registry import RuntimeOptions, load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("clip")
    ap.add_argument("--task", default="transcribe")
    ap.add_argument("--language", default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--engines", default="ctranslate2,torch,torch-no-drafts")
    args = ap.parse_args()
    from speechkit.threads import cpu_model, resolve_threads

    print(f"machine: {cpu_model()}; {os.cpu_count()} cores; threads {resolve_threads(args.threads)}")
    audio = decode_audio(args.clip)
    options = DecodeOptions(task=args.task, language=args.language)
    models = {e: load_model("whisper-base", RuntimeOptions(device="cpu", engine=e.split("-")[0],
                                                           threads=args.threads))
              for e in args.engines.split(",")}
    cpu: dict[str, list[float]] = {e: [] for e in models}
    walls: dict[str, list[float]] = {e: [] for e in models}
    text, steps = {}, {}
    for _ in range(args.repeats):
        for engine, model in models.items():
            counter = _count_steps(model)
            with _drafts_off() if engine.endswith("no-drafts") else contextlib.nullcontext():
                start, wall = time.process_time(), time.perf_counter()
                hyp = model.generate(audio_inputs([audio]), options)[0]
                cpu[engine].append(time.process_time() - start)
                wall = time.perf_counter() - wall
            walls[engine].append(wall)
            text[engine] = f"{hyp.language} T={hyp.extras.get('temperature')} {hyp.text!r}"
            if counter:
                counter[1].remove()
                steps[engine] = (f", {counter[0][0]} decoder passes, "
                                 f"{1000 * wall / counter[0][0]:.1f} ms of wall time a pass")
    for engine in models:
        print(f"{engine:16s} wall s median {statistics.median(walls[engine]):6.2f}, CPU s median "
              f"{statistics.median(cpu[engine]):6.2f} (runs {', '.join(f'{c:.1f}' for c in cpu[engine])})"
              f"{steps.get(engine, '')}: {text[engine]}")


@contextlib.contextmanager
def _drafts_off():
    from speechkit.models import whisper_torch

    saved, whisper_torch.DRAFT_TOKENS = whisper_torch.DRAFT_TOKENS, 0
    try:
        yield
    finally:
        whisper_torch.DRAFT_TOKENS = saved


def _count_steps(model):
    """On the torch engine, a counter of decoder passes (each embeds its rows' next tokens)
    and its hook; None on CTranslate2."""
    torch_model = getattr(model, "model", None)
    if not hasattr(torch_model, "proj_out"):
        return None
    count = [0]

    def step(*_):
        count[0] += 1

    return count, torch_model.model.decoder.embed_tokens.register_forward_hook(step)


if __name__ == "__main__":
    main()
