"""Speaker-verification trials through an embedding model: each recording is decoded and
embedded once, however many trials use it; a trial's score is the cosine of its two
embeddings, written as `extras.score` for EER/minDCF. Resumable like transcription.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from speechkit.data import Item, Result
from speechkit.errors import SpeechkitError
from speechkit.media.ffmpeg import decode_audio
from speechkit.models.base import SAMPLE_RATE, DecodeOptions
from speechkit.models.speaker import SpeakerEmbedder
from speechkit.results import ResultWriter
from speechkit.runtime import RunStats

log = logging.getLogger("speechkit")
DECODE_WORKERS = 2
DECODE_WINDOW = 32  # recordings decoded per step


def trial_paths(item: Item) -> tuple[str, str]:
    """(enrollment, test) recordings of a trial item."""
    enroll = item.enroll
    if not enroll:
        raise SpeechkitError(f"{item.id}: a verification trial needs an \"enroll\" recording beside "
                             "its path (the test recording)")
    return str(enroll), item.path


def run_trials(items: Sequence[Item], model: SpeakerEmbedder, options: DecodeOptions,
               writer: ResultWriter,
               on_result: Callable[[Result, RunStats], None] | None = None) -> RunStats:
    """Score every trial not yet in `writer`; a recording that fails fails its trials only."""
    stats = RunStats(total=len(items))
    writer.check_reuse([it.id for it in items], model.describe(), options.to_dict())
    todo = []
    for it in items:
        if writer.done(it.id):
            stats.skipped += 1
        else:
            todo.append(it)
    paths = sorted({p for it in todo if not it.error for p in trial_paths(it)})
    embeddings: dict[str, np.ndarray] = {}
    durations: dict[str, float] = {}
    failures: dict[str, str] = {}
    with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode") as pool:
        for path, audio in _decoded(pool, paths):
            if isinstance(audio, str):
                failures[path] = audio
                continue
            durations[path] = len(audio) / SAMPLE_RATE
            try:
                embeddings[path] = model.embed(audio)
            except SpeechkitError as e:
                failures[path] = f"{path}: {e}"
            except Exception as e:  # one bad recording must not stop the run
                log.debug("embedding failed", exc_info=True)
                failures[path] = f"{path}: the model failed on it ({type(e).__name__})"
    counted: set[str] = set()
    for it in todo:
        result = _trial_result(it, model, options, embeddings, durations, failures)
        writer.write(result)
        if result.status == "ok":
            stats.ok += 1
            for p in trial_paths(it):
                if p not in counted:  # each recording's audio counts once
                    counted.add(p)
                    stats.audio_s += durations[p]
        else:
            stats.failed += 1
        stats.tick()
        if on_result:
            on_result(result, stats)
    stats.tick()
    return stats


def _decoded(pool: ThreadPoolExecutor, paths: list[str]):
    """(path, audio or error) in order, decoding at most two windows ahead of the caller,
    so tens of thousands of recordings never sit decoded in memory at once."""
    windows = [paths[i:i + DECODE_WINDOW] for i in range(0, len(paths), DECODE_WINDOW)]
    ahead = [pool.map(_decode, w) for w in windows[:2]]
    for k, window in enumerate(windows):
        if k + 2 < len(windows):
            ahead.append(pool.map(_decode, windows[k + 2]))
        yield from zip(window, ahead[k], strict=True)
        ahead[k] = None


def _decode(path: str) -> np.ndarray | str:
    try:
        return decode_audio(path, SAMPLE_RATE)
    except SpeechkitError as e:
        return str(e)
    except Exception as e:
        return f"{path}: could not decode ({type(e).__name__}: {e})"


def _trial_result(it: Item, model: SpeakerEmbedder, options: DecodeOptions,
                  embeddings: dict[str, np.ndarray], durations: dict[str, float],
                  failures: dict[str, str]) -> Result:
    common = {"task": "sv", "model": model.describe(), "decode": options.to_dict()}
    if it.error:
        return Result.failed(it, it.error, **common)
    enroll, test = trial_paths(it)
    bad = [failures[p] for p in (enroll, test) if p in failures]
    if bad:
        return Result.failed(it, "; ".join(bad), **common)
    score = float(np.dot(embeddings[enroll], embeddings[test]))
    return Result(id=it.id, path=it.path, text="", reference=it.reference,
                  duration_s=round(durations[enroll] + durations[test], 3),
                  extras={"score": round(score, 6), "enroll_path": enroll}, **common)


def verify_items(items: Sequence[Item], model: SpeakerEmbedder, options: DecodeOptions,
                 results: Path | ResultWriter, *, overwrite: bool = False, on_result=None,
                 **_: object) -> RunStats:
    """`transcribe_items` for verification trials: JSONL in, scored trials out."""
    if isinstance(results, ResultWriter):
        return run_trials(items, model, options, results, on_result=on_result)
    with ResultWriter(results, overwrite=overwrite) as writer:
        return run_trials(items, model, options, writer, on_result=on_result)
