"""A clip's lip stream: frames through ffmpeg, the face followed, mouth crops, cached, cut to
the audio's clock and turned into the model's input."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import numpy as np

from speechkit.errors import ItemError
from speechkit.media.ffmpeg import check_media_file, decode_audio, display_name, probe
from speechkit.media.lips import frames as vf
from speechkit.media.lips import geometry as geo
from speechkit.media.lips import track as tr
from speechkit.media.lips.backends import DEFAULT_BACKEND, LandmarkBackend, load_backend
from speechkit.media.lips.cache import DamagedEntry, LipCrops, cache_key, load_crops, save_crops

log = logging.getLogger("speechkit")
KEEP_FRAMES = 750  # frames kept from the tracking pass (30 s; about 170 MB at 640x360 gray)


@dataclass
class LipStream:
    """What a model reads from a video: lip crops at 25 fps on the audio's clock, kept as
    uint8 (a 10-minute clip's float32 input would be 8x the memory, 460 MB); the model input
    is made from them where it is read."""

    fps: float  # 25.0
    face_frames: int  # frames where a face was found (the others are interpolated)
    backend: str  # the landmark backend that found the faces
    crops: np.ndarray  # [T, 96, 96] uint8: the crops as a person would look at them
    face_boxes: np.ndarray  # [T, 4] float32 (x0, y0, x1, y1) in the scaled frame's pixels
    mouth_boxes: np.ndarray  # [T, 4] float32, same pixels

    @property
    def model_crops(self) -> np.ndarray:
        """[T, 88, 88] uint8: the center crops the model reads (video encoders normalize them)."""
        return geo.center_crops(self.crops)

    @property
    def frames(self) -> np.ndarray:
        """[T, 88, 88] float32 model input ((gray/255 - 0.421) / 0.165), made on each access."""
        return geo.model_input(self.crops)


@functools.lru_cache(maxsize=2)
def _backend(name: str) -> LandmarkBackend:
    """One loaded backend per process (dlib's predictor takes about a second to read)."""
    return load_backend(name)


def crop_settings(backend: str, offset_s: float | None, duration_s: float | None) -> dict:
    """Everything that changes the crops of a file: part of the cache key."""
    return {"backend": backend, "offset_s": offset_s or 0.0, "duration_s": duration_s,
            "fps": vf.FPS, "max_side": vf.MAX_SIDE, "detect_every": tr.DETECT_EVERY,
            "detect_side": tr.DETECT_SIDE, "search": (tr.SEARCH_CLOSELY, tr.SEARCH_EVERY),
            "smooth": geo.SMOOTH_WINDOW, "crop": geo.CROP_SIZE, "face_scale": geo.FACE_SCALE}


class _KeptFrames:
    """The frames of the tracking pass, up to KEEP_FRAMES; past that none are kept and the
    crops are cut in a second decoding pass (memory stays bounded on long videos)."""

    def __init__(self, limit: int):
        self.limit, self.frames, self.count, self.size = limit, [], 0, (0, 0)

    def add(self, frame: np.ndarray) -> None:
        if self.count == 0:
            self.size = (frame.shape[1], frame.shape[0])
        self.count += 1
        if self.count <= self.limit:
            self.frames.append(frame)
        else:
            self.frames.clear()

    @property
    def complete(self) -> bool:
        return self.count <= self.limit


def compute_crops(path: str | os.PathLike, *, offset_s: float | None = None,
                  duration_s: float | None = None, backend: str = DEFAULT_BACKEND) -> LipCrops:
    """Track the face and cut the mouth crops of every 25 fps frame (no cache). A clip with no
    face at all gets crops of zeros and `has_face` all false."""
    model = _backend(backend)
    kept = _KeptFrames(KEEP_FRAMES)
    decode = functools.partial(vf.iter_frames, path, rgb=model.rgb, offset_s=offset_s,
                               duration_s=duration_s)
    track = tr.track_face(decode(), model, keep=kept.add)
    if not kept.count:
        raise ItemError(f"{display_name(path)}: decoded to no video frames; check the file "
                        "and the offset")
    w, h = kept.size
    has_face = ~np.isnan(track.landmarks).any(axis=(1, 2))
    n = kept.count
    if not has_face.any():
        nan4 = np.full((n, 4), np.nan, np.float32)
        return LipCrops(np.zeros((n, geo.CROP_SIZE, geo.CROP_SIZE), np.uint8), has_face, nan4,
                        nan4.copy(), (w, h))
    filled = geo.interpolate_missing(track.landmarks)
    smoothed = geo.smooth(filled)
    frames = kept.frames if kept.complete else decode()
    crops = np.stack([geo.mouth_crop(f, p) for f, p in zip(frames, smoothed, strict=True)])
    boxes = geo.interpolate_missing(track.face_boxes.reshape(n, 2, 2)).reshape(n, 4)
    return LipCrops(crops, has_face, boxes, geo.mouth_boxes(filled), (w, h))


def cached_crops(path: str | os.PathLike, *, offset_s: float | None = None,
                 duration_s: float | None = None, backend: str = DEFAULT_BACKEND,
                 cache: bool = True) -> LipCrops:
    """compute_crops through the crop cache (keyed by content and settings). A damaged or
    mismatched entry is computed again with a warning naming it; a cache that cannot be
    written (disk full, read-only) only costs the next run the same work."""
    check_media_file(path)  # before the hash: a FIFO or /dev/zero would never end
    if not cache:
        return compute_crops(path, offset_s=offset_s, duration_s=duration_s, backend=backend)
    settings = crop_settings(backend, offset_s, duration_s)
    try:
        key = cache_key(path, settings)
    except OSError:  # unreadable: let the decoder say why, in its words
        return compute_crops(path, offset_s=offset_s, duration_s=duration_s, backend=backend)
    try:
        found = load_crops(key, settings)
    except DamagedEntry as e:
        log.warning("%s", e)
        found = None
    if found is not None:
        return found
    crops = compute_crops(path, offset_s=offset_s, duration_s=duration_s, backend=backend)
    try:
        save_crops(key, crops, settings)
    except Exception as e:  # a full disk or a read-only cache never fails the clip
        log.warning("lip crops of %s not cached (%s: %s); they will be computed again next time",
                    display_name(path), type(e).__name__, e)
    return crops


def audio_clock_frames(path: str | os.PathLike, offset_s: float | None,
                       duration_s: float | None) -> int | None:
    """Frames the file's audio lasts at 25 fps, or None when it has no usable audio."""
    if not probe(path).audio_streams:
        return None
    try:
        audio = decode_audio(path, offset_s=offset_s or 0.0, duration_s=duration_s)
    except ItemError:
        return None
    return vf.audio_frames(len(audio))


def lip_stream(path: str | os.PathLike, *, offset_s: float | None = None,
               duration_s: float | None = None, backend: str = DEFAULT_BACKEND,
               cache: bool = True, n_frames: int | None = None) -> LipStream:
    """The lip crops of a video (or of the span offset_s .. offset_s + duration_s) as model input.

    The length follows the audio clock: `n_frames` when the caller knows the audio's length,
    else round(audio seconds x 25) from the file's audio, else the video's own frame count;
    the video is cut or its last frame repeated to match. Raises ItemError ("no face") when
    no frame shows a face.
    """
    crops = cached_crops(path, offset_s=offset_s, duration_s=duration_s, backend=backend,
                         cache=cache)
    if not crops.has_face.any():
        raise ItemError(f"{display_name(path)}: no face found in any of its {len(crops.crops)} "
                        "video frames; lip reading needs a visible face (use task asr for audio)")
    if n_frames is None:
        n_frames = audio_clock_frames(path, offset_s, duration_s) or len(crops.crops)
    if abs(n_frames - len(crops.crops)) > 2:  # more than the usual frame or two of difference
        log.warning("%s: the video lasts %d frames and the audio %d; the lip crops are %s to "
                    "the audio's length", display_name(path), len(crops.crops), n_frames,
                    "cut" if n_frames < len(crops.crops) else "padded with the last frame")
    fit = functools.partial(vf.fit_length, n=n_frames)
    return LipStream(fps=float(vf.FPS),
                     face_frames=int(fit(crops.has_face).sum()), backend=backend,
                     crops=fit(crops.crops), face_boxes=fit(crops.face_boxes),
                     mouth_boxes=fit(crops.mouth_boxes))
