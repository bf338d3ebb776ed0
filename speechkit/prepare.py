"""Before the model: check an item against the model, decode the streams it reads (audio, a
trial's enrollment recording, lip crops) and cut long audio into model-sized pieces. Runs in
the runner's decode threads (and in Ray's CPU tasks); knows nothing of batching."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from speechkit.audio import VIDEO_FPS
from speechkit.data import Item
from speechkit.errors import ItemError, decode_failure, first_line
from speechkit.media.ffmpeg import decode_audio
from speechkit.media.reuse import DecodedRecordings
from speechkit.media.vad import is_silent, split_long_audio
from speechkit.models.base import AUDIO, ENROLL, SAMPLE_RATE, VIDEO, Inputs, SpeechModel

if TYPE_CHECKING:  # lip crops (OpenCV, dlib) load only for models that read video
    from speechkit.media.lips.pool import CropPool

log = logging.getLogger("speechkit")


@dataclass
class _Prepared:
    item: Item
    duration_s: float = 0.0  # all of the item's recordings together
    spans: list[tuple[float, float]] = field(default_factory=list)  # pieces of the audio stream
    inputs: Inputs = field(default_factory=dict)
    note: str | None = None
    error: str | None = None
    language: str | None = None  # detected once for the whole item (long files)
    hyps: list = field(default_factory=list)  # one Hypothesis per span, as they are decoded
    key: str = ""  # what its pieces' text depends on (journal.piece_key), for files cut in pieces
    extras: dict[str, Any] = field(default_factory=dict)  # recorded in the result (lip crops)
    # each VAD piece's speech regions (item time): Whisper decodes one it jumped over on its own
    speech: list[tuple[tuple[float, float], ...]] = field(default_factory=list)


def check_item(item: Item, model: SpeechModel, task: str) -> str | None:
    """Why the model cannot take this item (a stream it needs is missing), or None; runs
    before anything is decoded."""
    if item.error:
        return item.error
    need = model.streams(task)
    if ENROLL in need and not item.enroll:
        return (f"{item.path}: a verification trial needs its enrollment recording beside the "
                "test recording; give the manifest line an `enroll` (the enrollment file)")
    return None


def _prepare(item: Item, model: SpeechModel, task: str, recordings: DecodedRecordings,
             lips: CropPool | None = None) -> _Prepared:
    """Check one item, decode its streams and cut its audio into model-sized spans (runs in a
    worker thread; lip crops, when the model reads them, in a crop process of `lips`)."""
    if (why := check_item(item, model, task)) is not None:
        return _Prepared(item, error=why)
    need = model.streams(task)
    try:
        silent_video = False
        try:
            inputs = _decode_audio_streams(item, need, recordings)
        except ItemError:
            if not (task == "avsr" and VIDEO in need and _has_no_audio(item)):
                raise
            inputs, silent_video = {}, True  # avsr on a video without sound: its lips alone
        extras = add_lips(item, task, inputs, lips) if VIDEO in need else {}
        if silent_video:  # recorded in the result, as the audio-only fallback is
            extras |= {"note": "no audio stream; decoded from the video alone",
                       "fallback": "video_only"}
    except Exception as e:  # an unforeseen failure must not stop the batch
        log.debug("decode failed", exc_info=True)
        return _Prepared(item, error=decode_failure(item.path, e, item.source))
    return cut_inputs(item, inputs, model, extras)


def cut_inputs(item: Item, inputs: Inputs, model: SpeechModel,
               extras: dict[str, Any] | None = None) -> _Prepared:
    """An item whose streams are decoded, its audio cut into model-sized spans (silence and
    long files handled here; lips and a trial's recordings are read whole, never cut).
    `extras` (what the lip crops recorded) go into the result."""
    extras = dict(extras or {})
    note = extras.pop("note", None)
    audio = inputs.get(AUDIO)
    if audio is None or len(inputs) > 1:  # lips, or a trial: the model reads it whole, never cut
        duration = _duration(inputs)
        end = duration if audio is None else len(audio) / SAMPLE_RATE
        return _Prepared(item, duration, [(0.0, end)], inputs, note, extras=extras)
    duration = len(audio) / SAMPLE_RATE
    if is_silent(audio):
        return _Prepared(item, duration, note="silent: no speech to transcribe", extras=extras)
    if duration <= model.max_input_s:
        return _Prepared(item, duration, [(0.0, duration)], inputs, note, extras=extras)
    cut = split_long_audio(audio, max_s=model.max_input_s, sample_rate=SAMPLE_RATE)
    note = note or (None if cut else "no speech detected by the voice activity detector")
    return _Prepared(item, duration, [(s.start, s.end) for s in cut], inputs, note, extras=extras,
                     speech=[s.speech for s in cut])


def _decode_audio_streams(item: Item, need: frozenset[str], recordings: DecodedRecordings) -> Inputs:
    """The item's audio (and a trial's enrollment recording) when the model reads them."""
    inputs: Inputs = {}
    trial = ENROLL in need
    if AUDIO in need:
        if trial and _whole_file(item):  # trials share recordings: each is decoded once
            inputs[AUDIO] = recordings.get(item.path)
        else:
            inputs[AUDIO] = decode_audio(item.path, SAMPLE_RATE, stream=item.meta.get("audio_stream"),
                                         offset_s=item.offset_s, duration_s=item.duration_s)
    if trial:
        inputs[ENROLL] = recordings.get(item.enroll)
    return inputs


def _duration(inputs: Inputs) -> float:
    """Seconds of all the item's recordings, or of its lip crops when it has no audio."""
    audio = sum(len(x) for k, x in inputs.items() if k != VIDEO)
    return audio / SAMPLE_RATE if audio else len(inputs.get(VIDEO, ())) / VIDEO_FPS


def add_lips(item: Item, task: str, inputs: Inputs, lips: CropPool | None) -> dict[str, Any]:
    """Put the item's lip crops in inputs[VIDEO], on its audio's clock; returns what the result
    records. Without a face, vsr fails the item and avsr goes on with the audio alone."""
    from speechkit.media.lips import lip_stream
    from speechkit.media.lips.frames import audio_frames

    kwargs = {"offset_s": item.offset_s, "duration_s": item.duration_s,
              "n_frames": audio_frames(len(inputs[AUDIO])) if AUDIO in inputs else None}
    try:
        stream = lips.lip_stream(item.path, **kwargs) if lips else lip_stream(item.path, **kwargs)
    except ItemError as e:
        if AUDIO not in inputs or task == "vsr":
            raise
        return {"note": f"{first_line(e)}; decoded from the audio alone",
                "fallback": "audio_only"}  # avsr without lips: recorded in the result
    inputs[VIDEO] = stream.model_crops  # uint8: the video encoder normalizes it chunk by chunk
    return {"lips": {"frames": len(stream.crops), "face_frames": stream.face_frames,
                     "backend": stream.backend}}


def _has_no_audio(item: Item) -> bool:
    """Whether the item's file holds no audio stream at all (a video without sound)."""
    from speechkit.media.ffmpeg import probe

    try:
        return not probe(item.path).audio_streams
    except ItemError:
        return False


def _whole_file(item: Item) -> bool:
    return not item.offset_s and item.duration_s is None and not item.meta.get("audio_stream")


def _shared_recordings(items: Sequence[Item], model: SpeechModel, task: str) -> DecodedRecordings:
    """The recordings the trials among `items` read, counted so each is decoded once."""
    paths: list[str] = []
    if ENROLL in model.streams(task):
        for it in items:
            if check_item(it, model, task) is None:
                paths += [it.enroll, *([it.path] if _whole_file(it) else [])]
    return DecodedRecordings(paths)


def _crop_pool() -> CropPool:
    """Worker processes for lip crops (imported here: only models that read video need them)."""
    from speechkit.media.lips.pool import CropPool

    return CropPool()
