"""Crops a person can check by eye: a 25 fps crop video (with the clip's sound) and a contact
sheet of evenly spaced crops, frames without a face framed in red."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from pathlib import Path

import cv2
import ffmpeg
import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.media.ffmpeg import _ffmpeg_input, _reason, display_name, ffmpeg_exe
from speechkit.media.lips.cache import LipCrops
from speechkit.media.lips.frames import FPS
from speechkit.staging import process_alive

SHEET_COLUMNS = 8
SHEET_TILES = 48  # crops on a contact sheet at most, evenly spaced over the clip
INTERPOLATED = (0, 0, 255)  # BGR red: the frame had no face; its crop comes from its neighbours


def write_crop_video(crops: np.ndarray, out: Path, sound: str | os.PathLike | None = None) -> Path:
    """The [T, H, W] uint8 crops as an mp4 at 25 fps (MPEG-4 part 2: in every ffmpeg build),
    with the first audio stream of `sound` when it has one."""
    n, h, w = crops.shape
    tmp = _partial(out)
    video = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="gray", s=f"{w}x{h}", r=FPS)
    streams = [video.video]
    if sound is not None:
        streams.append(ffmpeg.input(_ffmpeg_input(os.fsencode(sound)))["a:0?"])
    args = (ffmpeg.output(*streams, os.fsdecode(tmp), vcodec="mpeg4", pix_fmt="yuv420p",
                          **{"q:v": 3, "acodec": "aac", "shortest": None})
            .overwrite_output()
            .compile(cmd=[ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"]))
    try:
        proc = subprocess.run(args, input=np.ascontiguousarray(crops).tobytes(), capture_output=True)
        if proc.returncode != 0:
            raise SpeechkitError(f"cannot write {display_name(out)} "
                                 f"({_reason(proc.stderr.decode('utf-8', 'replace'))}); check that "
                                 "the folder is writable and has free space")
        os.replace(tmp, out)  # a full disk leaves no truncated video under the real name
    finally:
        tmp.unlink(missing_ok=True)
    return out


PARTIAL = re.compile(r"\.lips-(\d+)-[0-9a-f]+\.partial\.\w+$")  # a file being written


def remove_stale_partials(folder: Path) -> None:
    """Remove the half-written outputs that killed `lips` runs left in `folder`."""
    for entry in folder.iterdir():
        found = PARTIAL.match(entry.name)
        if found and not process_alive(int(found.group(1))):
            entry.unlink(missing_ok=True)


def _partial(out: Path) -> Path:
    """Where a file is written before it is renamed to `out`: same folder and extension, an
    ASCII name (ffmpeg-python cannot pass on a name that is not UTF-8)."""
    return out.with_name(f".lips-{os.getpid()}-{secrets.token_hex(4)}.partial{out.suffix}")


def contact_sheet(crops: LipCrops, tiles: int = SHEET_TILES, columns: int = SHEET_COLUMNS) -> np.ndarray:
    """A BGR image: evenly spaced crops in rows, each with its frame number."""
    n = len(crops.crops)
    picks = np.unique(np.linspace(0, n - 1, min(n, tiles)).round().astype(int))
    size = crops.crops.shape[1]
    rows = -(-len(picks) // columns)
    sheet = np.full((rows * size, columns * size, 3), 255, np.uint8)
    for k, t in enumerate(picks):
        tile = cv2.cvtColor(crops.crops[t], cv2.COLOR_GRAY2BGR)
        if not crops.has_face[t]:
            cv2.rectangle(tile, (0, 0), (size - 1, size - 1), INTERPOLATED, 2)
        cv2.putText(tile, str(t), (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 255, 255), 1,
                    cv2.LINE_AA)
        r, c = divmod(k, columns)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = tile
    return sheet


def write_contact_sheet(crops: LipCrops, out: Path) -> Path:
    ok, data = cv2.imencode(".png", contact_sheet(crops))
    if not ok:
        raise SpeechkitError(f"cannot encode the contact sheet for {display_name(out)}")
    tmp = _partial(out)
    try:
        tmp.write_bytes(data.tobytes())
        os.replace(tmp, out)
    except OSError as e:
        raise SpeechkitError(f"cannot write {display_name(out)} ({e.strerror}); check that the "
                             "folder is writable and has free space") from None
    finally:
        tmp.unlink(missing_ok=True)
    return out
