"""Mouth crops cached per input: the file's content hash plus every setting that changes the
crops, so a rerun or a second model reads them back instead of tracking the face again."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from speechkit.hashing import file_sha256
from speechkit.paths import speechkit_home

log = logging.getLogger("speechkit")

CACHE_VERSION = 1  # bump when the crop pipeline changes what it writes


@dataclass
class LipCrops:
    """A clip's mouth crops before the model transform, one row per 25 fps frame."""

    crops: np.ndarray  # [T, 96, 96] uint8 grayscale
    has_face: np.ndarray  # [T] bool: a face was found in this frame (else interpolated)
    face_boxes: np.ndarray  # [T, 4] float32 (x0, y0, x1, y1) in pixels of the scaled frame
    mouth_boxes: np.ndarray  # [T, 4] float32, same pixels
    frame_size: tuple[int, int]  # (width, height) of the frames the boxes refer to


def cache_dir() -> Path:
    return speechkit_home() / "lips"


def cache_key(path: str | os.PathLike, settings: dict) -> str:
    """sha256 over the file's content and the crop settings."""
    h = hashlib.sha256(file_sha256(path).encode("ascii"))
    h.update(json.dumps({**settings, "version": CACHE_VERSION}, sort_keys=True).encode("utf-8"))
    return h.hexdigest()


def _file(key: str) -> Path:
    return cache_dir() / key[:2] / f"{key}.npz"


def load_crops(key: str) -> LipCrops | None:
    """The cached crops, or None when there are none (or the file is unreadable)."""
    path = _file(key)
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return LipCrops(z["crops"], z["has_face"], z["face_boxes"], z["mouth_boxes"],
                            tuple(int(v) for v in z["frame_size"]))
    except (OSError, ValueError, KeyError) as e:  # a damaged entry is computed again
        log.debug("lip-crop cache entry %s unreadable (%s)", path, e)
        return None


def save_crops(key: str, crops: LipCrops) -> None:
    """Write atomically: a temporary file in the same folder, then one rename, so a reader
    never sees half an entry and two writers of the same key leave one whole file."""
    path = _file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, crops=crops.crops, has_face=crops.has_face, face_boxes=crops.face_boxes,
                     mouth_boxes=crops.mouth_boxes, frame_size=np.asarray(crops.frame_size))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
