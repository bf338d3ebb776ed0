"""Video frames at 25 fps through one ffmpeg call: upright (rotation metadata applied),
constant rate from any source rate (variable frame rate included), capped in size."""

from __future__ import annotations

import os
from collections.abc import Iterator

import ffmpeg
import numpy as np

from speechkit.audio import SAMPLE_RATE, VIDEO_FPS
from speechkit.errors import ItemError
from speechkit.media.ffmpeg import _ffmpeg_input, _reason, check_media_file, display_name, ffmpeg_exe, spawn

FPS = VIDEO_FPS  # frames per second
MAX_SIDE = 640  # px; frames are scaled down to this longer side (a face stays > 100 px in 1080p)
_NO_MATCH = "matches no streams"


def frame_count(seconds: float, fps: float = FPS) -> int:
    """Frames on the audio clock: round(seconds x fps), at least one."""
    return max(1, round(seconds * fps))


def audio_frames(samples: int, fps: float = FPS, sample_rate: int = SAMPLE_RATE) -> int:
    """Video frames that cover `samples` of 16 kHz audio."""
    return frame_count(samples / sample_rate, fps)


def _command(raw: bytes, rgb: bool, offset_s: float | None, duration_s: float | None,
             max_side: int) -> list[str | bytes]:
    input_args: dict[str, object] = {}
    if offset_s:
        input_args["ss"] = f"{offset_s:.6f}"
    if duration_s is not None:
        input_args["t"] = f"{duration_s:.6f}"
    # ffmpeg applies rotation metadata before the filters (autorotate), so the scale
    # expressions see the upright frame; -2 keeps the aspect ratio with an even size.
    landscape = "gte(iw,ih)"
    stream = (ffmpeg.input(_ffmpeg_input(raw), **input_args)["v:0"]
              .filter("fps", fps=FPS, round="near")
              .filter("scale", w=f"if({landscape},min(iw,{max_side}),-2)",
                      h=f"if({landscape},-2,min(ih,{max_side}))"))
    return stream.output("pipe:", format="image2pipe", vcodec="ppm" if rgb else "pgm",
                         pix_fmt="rgb24" if rgb else "gray", an=None).compile(
        cmd=[ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"])


def _read_header(stream) -> tuple[bytes, int, int] | None:
    """One netpbm header (P5/P6, width, height, maxval); None at the end of the stream."""
    tokens: list[bytes] = []
    head = b""
    token = b""
    while len(tokens) < 4:
        c = stream.read(1)
        if not c:
            return None
        head += c
        if c.isspace():
            if token:
                tokens.append(token)
                token = b""
        else:
            token += c
    return tokens[0], int(tokens[1]), int(tokens[2])


def iter_frames(path: str | bytes | os.PathLike, *, rgb: bool = False, offset_s: float | None = None,
                duration_s: float | None = None, max_side: int = MAX_SIDE) -> Iterator[np.ndarray]:
    """Yield the video's frames at 25 fps as uint8 arrays, [H, W] gray or [H, W, 3] RGB.

    Streams from ffmpeg's pipe (one frame in memory at a time); raises ItemError when the
    file has no video stream or ffmpeg cannot read it.
    """
    raw = check_media_file(path)
    args = _command(raw, rgb, offset_s, duration_s, max_side)
    proc, read_stderr = spawn(args)
    try:
        while (header := _read_header(proc.stdout)) is not None:
            _, w, h = header
            size = w * h * (3 if rgb else 1)
            data = proc.stdout.read(size)
            if len(data) < size:
                break
            shape = (h, w, 3) if rgb else (h, w)
            yield np.frombuffer(data, np.uint8).reshape(shape)
    finally:
        proc.stdout.close()
        proc.wait()
        err = read_stderr()
    stderr = err.decode("utf-8", "replace")
    if proc.returncode != 0:
        name = display_name(raw)
        if _NO_MATCH in stderr:
            raise ItemError(f"{name}: has no video stream (audio only); pass a video with a visible "
                            "face, or use an audio task (asr)")
        raise ItemError(f"{name}: ffmpeg cannot read its video ({_reason(stderr)}); the file is "
                        "corrupt or not a video: export or download it again")


def fit_length(values: np.ndarray, n: int) -> np.ndarray:
    """Cut or pad (repeating the last frame) along axis 0 to n frames: video and audio streams
    of one file often differ by a frame or two."""
    if len(values) >= n:
        return values[:n]
    pad = np.repeat(values[-1:], n - len(values), axis=0)
    return np.concatenate([values, pad], axis=0)
