"""The one batch loop for every model: each item checked, decoded and cut in the background
(prepare.py), length-sorted batches through the model, one result
line per item as soon as it is finished. Whisper, speech LLMs and speaker-embedding models
(a verification trial is an item with an `enroll` stream beside its `audio`) all run here."""

from __future__ import annotations

import contextlib
import logging
import resource
import sys
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from speechkit.data import Item, Result, Segment
from speechkit.errors import SpeechkitError, first_line
from speechkit.formats import SubtitleOptions, output_stems, write_formats
from speechkit.journal import PieceJournal, piece_key
from speechkit.models.base import AUDIO, ENROLL, SAMPLE_RATE, VIDEO, DecodeOptions, Inputs, SpeechModel
from speechkit.models.whisper_decode import PROMPT_RESET_TEMPERATURE
from speechkit.prepare import _crop_pool, _prepare, _Prepared, _shared_recordings
from speechkit.results import ResultWriter
from speechkit.settings import check_task

log = logging.getLogger("speechkit")

DEFAULT_BATCH_CPU = 8  # measured best on 2 cores with Whisper base (benchmarks/transcribe.py)
DEFAULT_BATCH_CUDA = 32
WINDOW_BATCHES = 4  # items decoded ahead: WINDOW_BATCHES x batch size, sorted by length together
DECODE_WORKERS = 2  # ffmpeg processes running at once


def default_batch_size(model: SpeechModel) -> int:
    """The model's own default when it has one, else by device."""
    if model.default_batch:
        return model.default_batch
    return DEFAULT_BATCH_CUDA if model.device.startswith("cuda") else DEFAULT_BATCH_CPU


@dataclass
class RunStats:
    """What a run did; RTFx = audio seconds / wall seconds (Open ASR Leaderboard)."""

    total: int = 0
    ok: int = 0
    failed: int = 0
    skipped: int = 0  # already ok in the output file (resume)
    audio_s: float = 0.0
    decoded_s: float = 0.0  # audio seconds decoded so far, finished items or not (progress)
    in_flight: float = 0.0  # files begun but not finished, counted by the share of pieces done
    wall_s: float = 0.0
    started: float = field(default_factory=time.perf_counter)
    settings: dict[str, Any] = field(default_factory=dict)  # what the run used (see used_settings)

    @property
    def done(self) -> int:
        return self.ok + self.failed + self.skipped

    @property
    def rtfx(self) -> float:
        return self.audio_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def progress(self) -> float:
        """Files done, plus the decoded share of the files under way (a long file moves the bar)."""
        return self.done + self.in_flight

    @property
    def live_rtfx(self) -> float:
        """Audio decoded so far (finished files or not) per wall second: the speed while running."""
        return self.decoded_s / self.wall_s if self.wall_s > 0 else 0.0

    def tick(self) -> None:
        self.wall_s = time.perf_counter() - self.started


def peak_memory_mb() -> dict[str, float]:
    """Peak resident memory of this process, and peak CUDA memory when a GPU was used (only
    torch uses one: a run that never imported it is not made to)."""
    out = {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out



def _windows(items: Sequence[Item], size: int) -> Iterator[Sequence[Item]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


class Transcriber:
    """Runs items through a model and writes one Result per item."""

    def __init__(self, model: SpeechModel, options: DecodeOptions, writer: ResultWriter,
                 batch_size: int | None = None, formats: tuple[str, ...] = (),
                 format_dir: Path | None = None, subtitles: SubtitleOptions = SubtitleOptions(),
                 on_result: Callable[[Result, RunStats], None] | None = None,
                 on_progress: Callable[[RunStats], None] | None = None):
        self.model = model
        self.options = model.resolve(options)  # results record the settings actually used
        check_task(model, self.options.task)
        self.writer = writer
        self.batch_size = batch_size or default_batch_size(model)
        self.formats = formats
        self.subtitles = subtitles
        self.format_dir = format_dir
        self.on_result = on_result
        self.on_progress = on_progress
        self.settings = {**model.used_settings(), "batch_size": self.batch_size,
                         "beam_size": self.options.beam_size}
        self.stats = RunStats(settings=self.settings)
        # Whisper prompted with previous text: a file's pieces decode in turn
        self.conditioned = bool(self.options.condition_on_previous_text) and \
            "condition_on_previous_text" in model.uses
        # Finished pieces of long files, kept across interruptions (a results file's writer
        # has one; Ray's workers write through the driver and have none).
        self.journal: PieceJournal | None = getattr(writer, "pieces", None)

    def run(self, items: Sequence[Item]) -> RunStats:
        self.stats = RunStats(total=len(items), settings=self.settings)
        self.stems = output_stems((it.id, it.path) for it in items)  # stable across resumed runs
        # Reuse finished lines only when this model and these settings made them.
        self.writer.check_reuse([it.id for it in items], self.model.describe(),
                                self.options.to_dict())
        todo = []
        for it in items:
            if self.writer.done(it.id):
                self.stats.skipped += 1
            else:
                todo.append(it)
        window = self.batch_size * WINDOW_BATCHES
        recordings = _shared_recordings(todo, self.model, self.options.task)
        lips = _crop_pool() if VIDEO in self.model.streams(self.options.task) and todo else None
        with ThreadPoolExecutor(DECODE_WORKERS, thread_name_prefix="decode") as pool, \
                lips or contextlib.nullcontext():
            def submit(w: Sequence[Item]) -> list[Future[_Prepared]]:
                return [pool.submit(_prepare, it, self.model, self.options.task, recordings, lips)
                        for it in w]

            pending: deque[list[Future[_Prepared]]] = deque()
            windows = _windows(todo, window)
            for _ in range(2):  # keep one window decoding while the model works on another
                if (w := next(windows, None)) is not None:
                    pending.append(submit(w))
            while pending:
                prepared = [f.result() for f in pending.popleft()]
                if (w := next(windows, None)) is not None:
                    pending.append(submit(w))
                self._run_window(prepared)
        self.stats.tick()
        return self.stats

    def _run_window(self, prepared: list[_Prepared]) -> None:
        """Decode a window's pieces longest first; write each item once its pieces are done.
        Pieces of a file cut into several are journaled as they finish, and an earlier run's
        journaled pieces are taken back instead of decoded again. Conditioned on previous
        text, a file's pieces go in turn: each pass batches the next piece of every file."""
        for p in prepared:
            p.hyps = [None] * len(p.spans)
            if p.error or not p.spans:
                self._finish(p)
        live = [p for p in prepared if not p.error and p.spans]
        self._restore_pieces(live)
        self._detect_languages([p for p in live if None in p.hyps])
        left = {id(p): p.hyps.count(None) for p in live}
        for p in live:
            if left[id(p)] == 0:  # every piece came from the journal
                self._finish(p)
        while pieces := self._ready(live):
            pieces.sort(key=lambda pk: pk[0].spans[pk[1]][1] - pk[0].spans[pk[1]][0], reverse=True)
            for b in range(0, len(pieces), self.batch_size):
                self._run_batch(pieces[b:b + self.batch_size], live, left)

    def _ready(self, live: list[_Prepared]) -> list[tuple[_Prepared, int]]:
        """The pieces that can be decoded now: all left, or with conditioning on previous text
        each file's first piece left (the one before it is done). A failed file has none."""
        live = [p for p in live if not p.error]
        if not self.conditioned:
            return [(p, k) for p in live for k in range(len(p.spans)) if p.hyps[k] is None]
        return [(p, p.hyps.index(None)) for p in live if None in p.hyps]

    def _run_batch(self, batch: list[tuple[_Prepared, int]], live: list[_Prepared],
                   left: dict[int, int]) -> None:
        for (p, k), hyp in zip(batch, self._generate(batch), strict=True):
            p.hyps[k] = hyp
            if hyp is not None and hyp.error:  # the model failed this input only
                p.error = f"{p.item.path}: {hyp.error}"
            elif hyp is not None and self.journal is not None and len(p.spans) > 1:
                self.journal.add(p.item.id, p.key, p.spans[k], hyp, p.language)
            self.stats.decoded_s += p.spans[k][1] - p.spans[k][0]
            left[id(p)] -= 1
            if p.error and self.conditioned:
                left[id(p)] = 0  # its later pieces are not decoded: the file has failed
            if left[id(p)] == 0:
                self._finish(p)
        if self.journal is not None:
            self.journal.sync()
        self.stats.in_flight = sum(1 - left[id(p)] / len(p.spans) for p in live if left[id(p)])
        self.stats.tick()
        if self.on_progress:
            self.on_progress(self.stats)

    def _restore_pieces(self, prepared: list[_Prepared]) -> None:
        """Take back the pieces an interrupted run finished (files cut into several pieces)."""
        if self.journal is None:
            return
        model, decode = self.model.describe(), self.options.to_dict()
        for p in prepared:
            if len(p.spans) < 2:
                continue
            p.key = piece_key(p.item, model, decode)
            found, detected = self.journal.restore(p.item.id, p.key, p.spans)
            for k, hyp in found.items():
                p.hyps[k] = hyp
                self.stats.decoded_s += p.spans[k][1] - p.spans[k][0]
            if found:
                p.language = p.language or detected
                p.extras["resumed_pieces"] = len(found)

    def _detect_languages(self, prepared: list[_Prepared]) -> None:
        """A file cut into several pieces gets one language, detected on its first piece, so
        that every piece is decoded in it (a piece alone may be misheard as another language)."""
        need = [p for p in prepared
                if len(p.spans) > 1 and not (p.item.language or self.options.language or p.language)]
        if not need:
            return
        found = self.model.detect_language([_piece(p, 0) for p in need])
        for p, lang in zip(need, found, strict=True):
            p.language = lang

    def _generate(self, batch: list[tuple[_Prepared, int]]) -> list:
        inputs = [_piece(p, k) for p, k in batch]
        prompts = [p.item.prompt for p, _ in batch]
        languages = [p.item.language or p.language for p, _ in batch]
        kwargs: dict[str, Any] = {}
        if "condition_on_previous_text" in self.model.uses:  # Whisper: VAD pieces, prompts
            kwargs["speech_to_end"] = [len(p.spans) > 1 for p, _ in batch]
            kwargs["speech"] = [_piece_speech(p, k) for p, k in batch]
            if self.conditioned:
                kwargs["previous"] = [previous_text(p, k) for p, k in batch]
        try:
            return self.model.generate(inputs, self.options, prompts, languages, **kwargs)
        except SpeechkitError:
            raise  # a usage error (e.g. wrong task for this model) stops the run with its message
        except Exception as e:
            if len(batch) == 1:
                p = batch[0][0]
                log.debug("generation failed", exc_info=True)
                p.error = (f"{p.item.path}: the model failed on this item ({type(e).__name__}: "
                           f"{first_line(e, 200)}); rerun with --debug for the traceback")
                return [None]
            # One bad item must not fail its neighbours: retry the batch one at a time, and say so.
            log.warning("a batch of %d failed (%s: %s); decoding its items one at a time",
                        len(batch), type(e).__name__, first_line(e, 200), exc_info=log.isEnabledFor(10))
            return [self._generate([pk])[0] for pk in batch]

    def _finish(self, p: _Prepared) -> None:
        item = p.item
        if p.error:  # set when decoding or generation failed (a piece then has no hypothesis)
            result = Result.failed(item, p.error, task=self.options.task, model=self._record(),
                                   decode=self.options.to_dict())
        else:
            result = self._result(p)
            if self.formats and self.format_dir is not None:
                write_formats(result, self.formats, self.format_dir, self.stems[item.id],
                              self.subtitles)
        self.writer.write(result)
        if result.status == "ok":
            self.stats.ok += 1
            self.stats.audio_s += p.duration_s
        else:
            self.stats.failed += 1
        self.stats.tick()
        if self.on_result:
            self.on_result(result, self.stats)

    def _result(self, p: _Prepared) -> Result:
        """One item's result from its pieces' hypotheses (times relative to the item)."""
        segs, langs, extras, warnings = [], Counter(), {}, []
        fallback = silent = 0
        for (start, end), hyp in zip(p.spans, p.hyps, strict=True):
            pieces = hyp.segments or ([Segment(0.0, end - start, hyp.text)] if hyp.text else [])
            segs.extend(s.shifted(start, end) for s in pieces)
            if hyp.language:
                langs[hyp.language] += end - start
            if "warning" in hyp.extras:
                warnings.append(f"{start:.1f}-{end:.1f} s: {hyp.extras['warning']}")
            fallback += bool(hyp.extras.get("temperature"))
            silent += bool(hyp.extras.get("no_speech"))
            extras.update({k: v for k, v in hyp.extras.items() if k not in _WINDOW_KEYS})
        if fallback:
            extras["fallback_windows"] = fallback  # decoded again at a higher temperature
        if silent:
            extras["no_speech_windows"] = silent  # judged silence: no text kept
        if warnings:
            extras["warnings"] = warnings
        if p.note:
            extras["note"] = p.note
        extras.update(p.extras)
        if ENROLL in p.inputs:
            extras["enroll_path"] = p.item.enroll
        item = p.item
        return Result(
            id=item.id, path=item.path, task=self.options.task,
            language=langs.most_common(1)[0][0] if langs else item.language or self.options.language,
            text=" ".join(s.text for s in segs if s.text).strip(), segments=segs,
            duration_s=round(p.duration_s, 3), reference=item.reference,
            model=self._record(), decode=self.options.to_dict(), extras=extras)

    def _record(self) -> dict[str, Any]:
        """The model's identity and, under `runtime`, how this run ran it (batch size, dtype,
        quant, beam, device); resume compares the identity only."""
        return {**self.model.describe(), "runtime": dict(self.settings)}


# Per-window decoding figures (Whisper): summarised per item, not copied into its extras.
_WINDOW_KEYS = frozenset({"warning", "temperature", "avg_logprob", "compression_ratio",
                          "no_speech_prob", "no_speech"})


def previous_text(p: _Prepared, k: int) -> str | None:
    """The text the k-th piece of an item is prompted with: the piece before's, unless that
    was decoded hot or flagged (a repetition loop), as openai-whisper resets its prompt.
    It comes from the journal on a resumed run, so the prompt is the uninterrupted run's."""
    before = p.hyps[k - 1] if k > 0 else None
    if before is None or before.error or "warning" in before.extras \
            or (before.extras.get("temperature") or 0.0) > PROMPT_RESET_TEMPERATURE:
        return None
    return before.text or None


def _piece_speech(p: _Prepared, k: int) -> list[tuple[float, float]] | None:
    """The k-th piece's VAD speech regions, in seconds from the piece's start, or None."""
    if len(p.spans) < 2 or k >= len(p.speech) or not p.speech[k]:
        return None
    start = p.spans[k][0]
    return [(s - start, e - start) for s, e in p.speech[k]]


def _piece(p: _Prepared, k: int) -> Inputs:
    """The k-th piece of an item: its audio cut to the span, its other streams whole."""
    if AUDIO not in p.inputs:  # lips alone: read whole
        return p.inputs
    start, end = p.spans[k]
    audio = p.inputs[AUDIO]
    return {**p.inputs, AUDIO: audio[int(start * SAMPLE_RATE):int(round(end * SAMPLE_RATE))]}

