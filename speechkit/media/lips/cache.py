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
from speechkit.staging import process_alive

log = logging.getLogger("speechkit")

CACHE_VERSION = 2  # bump when the crop pipeline changes what it writes (2: entries carry a
#                   record of their key, settings and a checksum of their arrays)
ARRAYS = ("crops", "has_face", "face_boxes", "mouth_boxes", "frame_size")


@dataclass
class LipCrops:
    """A clip's mouth crops before the model transform, one row per 25 fps frame."""

    crops: np.ndarray  # [T, 96, 96] uint8 grayscale
    has_face: np.ndarray  # [T] bool: a face was found in this frame (else interpolated)
    face_boxes: np.ndarray  # [T, 4] float32 (x0, y0, x1, y1) in pixels of the scaled frame
    mouth_boxes: np.ndarray  # [T, 4] float32, same pixels
    frame_size: tuple[int, int]  # (width, height) of the frames the boxes refer to


class DamagedEntry(Exception):
    """A cache entry that cannot be used: its file and why (it is computed again)."""

    def __init__(self, path: Path, why: str):
        super().__init__(f"lip-crop cache entry {path} {why}; its crops are computed again")
        self.path = path


def cache_dir() -> Path:
    return speechkit_home() / "lips"


def cache_key(path: str | os.PathLike, settings: dict) -> str:
    """sha256 over the file's content and the crop settings (read only after the caller has
    checked that `path` is a regular file: hashing a FIFO or /dev/zero never ends)."""
    h = hashlib.sha256(file_sha256(path).encode("ascii"))
    h.update(_settings_text(settings).encode("utf-8"))
    return h.hexdigest()


def _settings_text(settings: dict) -> str:
    return json.dumps({**settings, "version": CACHE_VERSION}, sort_keys=True)


def _file(key: str) -> Path:
    return cache_dir() / key[:2] / f"{key}.npz"


def _checksum(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over each array's name, dtype, shape and bytes, in a fixed order."""
    h = hashlib.sha256()
    for name in ARRAYS:
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype.str}:{a.shape};".encode("ascii"))
        h.update(a.tobytes())
    return h.hexdigest()


def _arrays(crops: LipCrops) -> dict[str, np.ndarray]:
    return {"crops": crops.crops, "has_face": crops.has_face, "face_boxes": crops.face_boxes,
            "mouth_boxes": crops.mouth_boxes, "frame_size": np.asarray(crops.frame_size, np.int64)}


def load_crops(key: str, settings: dict) -> LipCrops | None:
    """The cached crops, or None when there are none. An entry that is damaged (truncated,
    bit-flipped), made for other settings or holding another key's crops raises DamagedEntry."""
    path = _file(key)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in ARRAYS}
            record = json.loads(z["record"].tobytes().decode("utf-8"))
    except Exception as e:  # BadZipFile, zlib.error, EOFError, a missing array: unreadable
        raise DamagedEntry(path, f"cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(record, dict) or record.get("key") != key:
        raise DamagedEntry(path, "holds the crops of another file or settings")
    if record.get("settings") != _settings_text(settings):
        raise DamagedEntry(path, "was made with other crop settings")
    if record.get("checksum") != _checksum(arrays):
        raise DamagedEntry(path, "does not match its checksum (damaged on disk)")
    n = len(arrays["crops"])
    if (arrays["crops"].dtype != np.uint8 or arrays["crops"].ndim != 3
            or arrays["has_face"].shape != (n,) or arrays["face_boxes"].shape != (n, 4)
            or arrays["mouth_boxes"].shape != (n, 4) or arrays["frame_size"].shape != (2,)):
        raise DamagedEntry(path, "holds arrays of the wrong shapes")
    return LipCrops(arrays["crops"], arrays["has_face"].astype(bool), arrays["face_boxes"],
                    arrays["mouth_boxes"], tuple(int(v) for v in arrays["frame_size"]))


def save_crops(key: str, crops: LipCrops, settings: dict) -> None:
    """Write atomically: a temporary file in the same folder, then one rename, so a reader
    never sees half an entry and two writers of the same key leave one whole file. The entry
    records its key, its settings and a checksum of its arrays, checked when it is read."""
    path = _file(key)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path.parent)
    arrays = _arrays(crops)
    record = {"key": key, "settings": _settings_text(settings), "checksum": _checksum(arrays)}
    fd, tmp = tempfile.mkstemp(prefix=f".{key[:8]}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            # compressed: frames without a face are zeros (a faceless minute is 14 MB raw)
            np.savez_compressed(
                f, **arrays, record=np.frombuffer(json.dumps(record).encode("utf-8"), np.uint8))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _remove_stale_temporaries(folder: Path) -> None:
    """Remove the half-written entries of killed runs (`.KEY8.PID.XXXX.tmp`, PID gone)."""
    for entry in folder.glob(".*.tmp"):
        parts = entry.name.split(".")
        if len(parts) >= 4 and parts[2].isdigit() and not process_alive(int(parts[2])):
            entry.unlink(missing_ok=True)
