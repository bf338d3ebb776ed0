"""Audio decoding and stream probing with one ffmpeg call each (no ffprobe needed)."""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass

import ffmpeg
import numpy as np

from speechkit.audio import SAMPLE_RATE
from speechkit.errors import ItemError, SpeechkitError
from speechkit.media.wav import wav_shortfall

log = logging.getLogger("speechkit")

FFMPEG_ENV = "SPEECHKIT_FFMPEG"  # path to an ffmpeg binary; overrides PATH and imageio-ffmpeg
DETAIL_MAX_CHARS = 160  # ffmpeg's reason, as quoted in an error message
_PARTIAL = "partial file"  # ffmpeg's mov/mp4 demuxer: the file ends inside its media data
# ffmpeg prefixes log lines with their source, e.g. "[in#0 @ 0x55e9...] " or "[flac @ 0x55...] "
_LOG_PREFIX = re.compile(r"^(\[[^\]]*@ 0x[0-9a-f]+\]\s*)+")
_GENERIC_LINE = re.compile(r"^(Error opening input file |To ignore this, add a trailing)")
_REASON_LINE = re.compile(r"^Error opening (?:input|output)(?: files)?: (.*)$")
_NO_MATCH = "matches no streams"  # ffmpeg's complaint when -map 0:a:N selects nothing

# `ffmpeg -i` stderr: "  Duration: 00:01:02.50, start: 0.000000, bitrate: 256 kb/s"
_DURATION = re.compile(r"^\s*Duration:\s*(\d+):(\d\d):(\d\d(?:\.\d+)?)")
# "  Stream #0:1[0x2](und): Audio: aac (LC) (mp4a / 0x6134706D), 44100 Hz, mono, fltp"
_STREAM = re.compile(r"^\s*Stream #\d+:(\d+)\S*: (Audio|Video): (\w+)(.*)$")
_SAMPLE_RATE = re.compile(r"(\d+) Hz")
_CHANNELS = re.compile(r"(\d+) channels")
_SIZE = re.compile(r"\b(\d{2,5})x(\d{2,5})\b")
_FPS = re.compile(r"([\d.]+)(k?) fps")
_LAYOUT_CHANNELS = {  # ffmpeg channel-layout names -> channel count
    "mono": 1, "stereo": 2, "downmix": 2, "2.1": 3, "3.0": 3, "3.0(back)": 3, "4.0": 4,
    "quad": 4, "quad(side)": 4, "3.1": 4, "5.0": 5, "5.0(side)": 5, "4.1": 5, "5.1": 6,
    "5.1(side)": 6, "6.0": 6, "6.0(front)": 6, "hexagonal": 6, "6.1": 7, "6.1(back)": 7,
    "6.1(front)": 7, "7.0": 7, "7.0(front)": 7, "7.1": 8, "7.1(wide)": 8, "7.1(wide-side)": 8,
    "octagonal": 8,
}  # fmt: skip


@dataclass(frozen=True)
class StreamInfo:
    """One audio or video stream of a media file, as ffmpeg reports it."""

    index: int  # ffmpeg's stream index in the file (0:N), counting every kind
    kind: str  # "audio" | "video"
    codec: str
    sample_rate: int | None = None  # Hz, audio only
    channels: int | None = None  # audio only
    fps: float | None = None  # frames per second, video only
    width: int | None = None  # pixels, video only
    height: int | None = None  # pixels, video only


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds: its duration and its audio and video streams."""

    path: str
    duration_s: float | None  # None when the container does not say
    streams: tuple[StreamInfo, ...]

    @property
    def audio_streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.kind == "audio")

    @property
    def video_streams(self) -> tuple[StreamInfo, ...]:
        return tuple(s for s in self.streams if s.kind == "video")


def ffmpeg_exe() -> str:
    """The ffmpeg binary: $SPEECHKIT_FFMPEG, else `ffmpeg` on PATH, else imageio-ffmpeg's."""
    override = os.environ.get(FFMPEG_ENV)
    if override:
        found = shutil.which(override)
        if found is None:
            raise SpeechkitError(
                f"{FFMPEG_ENV}={override} is not an executable ffmpeg; fix the path or unset it"
            )
        return found
    return _default_ffmpeg()


@functools.lru_cache(maxsize=1)
def _default_ffmpeg() -> str:
    """Look for ffmpeg once per process."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg

        return imageio_ffmpeg.get_ffmpeg_exe()
    except Exception as e:  # not installed, or its binary is missing for this platform
        raise SpeechkitError(
            f"ffmpeg not found ({type(e).__name__}: {e}); install ffmpeg, "
            f"`pip install imageio-ffmpeg`, or set {FFMPEG_ENV}=/path/to/ffmpeg"
        ) from None


def display_name(path: str | bytes | os.PathLike) -> str:
    """The path as printable text: bytes that are not UTF-8 are shown as \\xNN escapes (and a
    lone surrogate, which no file name holds, as \\udXXX)."""
    try:
        raw = os.fsencode(path)
    except UnicodeEncodeError:
        raw = os.fspath(path).encode("utf-8", "backslashreplace")  # type: ignore[union-attr]
    return raw.decode("utf-8", "backslashreplace")


def check_media_file(path: str | bytes | os.PathLike) -> bytes:
    """Fail with a clear message unless PATH is a readable, non-empty regular file; returns it
    as bytes. Anything else is refused before it is opened: a FIFO would block forever and a
    device such as /dev/zero never ends."""
    raw = os.fsencode(path)
    name = display_name(raw)
    try:
        st = os.stat(raw)
        mode = st.st_mode
        if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
            raise ItemError(f"{name}: not a regular file (a pipe, device or socket); pass a media "
                            "file")
        if stat.S_ISREG(mode) and st.st_size == 0:
            # Never read: a kernel file such as /proc/kmsg says 0 bytes and blocks when read.
            if os.path.realpath(raw).startswith((b"/proc/", b"/sys/")):
                raise ItemError(f"{name}: a kernel file, not media; pass a media file")
            raise ItemError(f"{name}: file is empty (0 bytes); copy or export it again")
        with open(raw, "rb") as f:
            empty = not f.read(1)
    except FileNotFoundError:
        raise ItemError(f"{name}: no such file; check the path") from None
    except IsADirectoryError:
        raise ItemError(f"{name}: is a directory, not a media file; pass a file") from None
    except PermissionError:
        raise ItemError(
            f"{name}: permission denied; make it readable (chmod +r) or run as a user who can"
        ) from None
    except OSError as e:
        raise ItemError(f"{name}: cannot be read ({e.strerror}); check the file") from None
    if empty:
        raise ItemError(f"{name}: file is empty (0 bytes); copy or export it again")
    return raw


def _ffmpeg_input(raw: bytes) -> bytes:
    """The input argument: `file:` so names with colons or a leading dash stay file names."""
    return b"file:" + raw


def _reason(stderr: str) -> str:
    """ffmpeg's specific complaint from its stderr, short, without log prefixes or the path."""
    reasons: list[str] = []
    for line in stderr.splitlines():
        line = _LOG_PREFIX.sub("", line).strip()
        if not line or _GENERIC_LINE.match(line):
            continue
        m = _REASON_LINE.match(line)
        line = m.group(1) if m else line
        if line in reasons:
            reasons.remove(line)
        reasons.append(line)
    detail = "; ".join(reasons[-2:]) or "no error message"
    return detail if len(detail) <= DETAIL_MAX_CHARS else detail[: DETAIL_MAX_CHARS - 3] + "..."


def _run(args: list[str | bytes]) -> subprocess.CompletedProcess[bytes]:
    """Run ffmpeg; a binary that cannot start is a setup problem, not an item problem."""
    try:
        return subprocess.run(args, stdin=subprocess.DEVNULL, capture_output=True, check=False)
    except OSError as e:
        raise _cannot_run(args, e) from None


def _cannot_run(args: list[str | bytes], e: OSError) -> SpeechkitError:
    """A binary that cannot start is a setup problem, not an item problem."""
    return SpeechkitError(
        f"cannot run ffmpeg at {args[0]!s} ({e.strerror}); set {FFMPEG_ENV} to a working ffmpeg")


READ_CHUNK = 1 << 20  # bytes per read from ffmpeg's stdout


def spawn(args: list[str | bytes]) -> tuple[subprocess.Popen, Callable[[], bytes]]:
    """Start ffmpeg with its output on a pipe and its stderr drained by a thread (neither pipe
    can stall it); returns the process and a function giving all of stderr once it ended."""
    try:
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
    except OSError as e:
        raise _cannot_run(args, e) from None
    parts: list[bytes] = []
    reader = threading.Thread(target=lambda: parts.append(proc.stderr.read()), daemon=True)
    reader.start()

    def stderr() -> bytes:
        reader.join()
        return b"".join(parts)

    return proc, stderr


def _run_samples(args: list[str | bytes], sample_rate: int) -> tuple[int, np.ndarray, bytes]:
    """Run ffmpeg writing f32le to stdout; (exit code, samples, stderr).

    Samples are read straight into a float32 array that grows as needed (no intermediate
    bytes object), so a three-hour file costs about its decoded size in memory, not 3x.
    """
    proc, stderr = spawn(args)
    buf = np.empty(sample_rate * 60, dtype=np.float32)  # a minute to start; grows by half
    view = memoryview(buf).cast("B")
    filled = 0
    with proc.stdout:
        while True:
            if filled + READ_CHUNK > view.nbytes:
                grown = np.empty(max(buf.size * 3 // 2, (filled + READ_CHUNK) // 4 + 1),
                                 dtype=np.float32)
                memoryview(grown).cast("B")[:filled] = view[:filled]
                view.release()
                buf, view = grown, memoryview(grown).cast("B")
            n = proc.stdout.readinto(view[filled:filled + READ_CHUNK])
            if not n:
                break
            filled += n
    view.release()
    proc.wait()
    audio = buf[:filled // 4]
    if audio.size * 2 < buf.size:  # do not keep a mostly empty buffer alive
        audio = audio.copy()
    return proc.returncode, audio, stderr()


def probe(path: str | bytes | os.PathLike) -> MediaInfo:
    """Streams and duration of a media file, parsed from `ffmpeg -i` (cover art is left out)."""
    raw = check_media_file(path)
    name = display_name(raw)
    proc = _run([ffmpeg_exe(), "-nostdin", "-hide_banner", "-i", _ffmpeg_input(raw)])
    # With no output file ffmpeg always exits 1; a readable input still prints "Input #0".
    stderr = proc.stderr.decode("utf-8", "replace")
    if "Input #0" not in stderr:
        raise _undecodable(name, stderr)
    return _parse_probe(os.fsdecode(raw), stderr)


def _parse_probe(path: str, stderr: str) -> MediaInfo:
    """Read Duration and the Stream lines of the first input from ffmpeg's stderr."""
    duration: float | None = None
    streams: list[StreamInfo] = []
    for line in stderr.splitlines():
        if line.startswith("Output #") or line.startswith("Input #1"):
            break
        m = _DURATION.match(line)
        if m:
            h, mnt, sec = m.groups()
            duration = int(h) * 3600 + int(mnt) * 60 + float(sec)
            continue
        m = _STREAM.match(line)
        if m is None or "(attached pic)" in line:
            continue
        index, kind, codec, rest = int(m.group(1)), m.group(2).lower(), m.group(3), m.group(4)
        if kind == "audio":
            streams.append(StreamInfo(index, kind, codec, _audio_rate(rest), _channels(rest)))
        else:
            size = _SIZE.search(rest)
            fps = _FPS.search(rest)
            streams.append(
                StreamInfo(
                    index,
                    kind,
                    codec,
                    fps=float(fps.group(1)) * (1000 if fps.group(2) else 1) if fps else None,
                    width=int(size.group(1)) if size else None,
                    height=int(size.group(2)) if size else None,
                )
            )
    return MediaInfo(path, duration, tuple(streams))


def _audio_rate(rest: str) -> int | None:
    m = _SAMPLE_RATE.search(rest)
    return int(m.group(1)) if m else None


def _channels(rest: str) -> int | None:
    """Channel count from "mono", "stereo", "5.1(side)" or "3 channels"."""
    m = _CHANNELS.search(rest)
    if m:
        return int(m.group(1))
    fields = [f.strip() for f in rest.split(",")]
    for f in fields:
        if f in _LAYOUT_CHANNELS:
            return _LAYOUT_CHANNELS[f]
    return None


def _undecodable(name: str, stderr: str) -> ItemError:
    return ItemError(
        f"{name}: ffmpeg cannot read it ({_reason(stderr)}); the file is corrupt, truncated or "
        "not audio/video: export or download it again"
    )


def _stream_error(raw: bytes, name: str, stream: int) -> ItemError:
    """Explain a -map that selected nothing: no audio at all, or a stream index out of range."""
    info = probe(raw)
    n_audio = len(info.audio_streams)
    if n_audio == 0:
        holds = "video only" if info.video_streams else "no audio or video streams"
        return ItemError(
            f"{name}: has no audio stream ({holds}); pass a file with sound, "
            "or --audio-stream to choose another"
        )
    return ItemError(
        f"{name}: --audio-stream {stream} is out of range: the file has {n_audio} audio "
        f"stream(s); pass --audio-stream 0 to {n_audio - 1}"
    )


def decode_audio(
    path: str | bytes | os.PathLike,
    sample_rate: int = SAMPLE_RATE,
    stream: int | None = None,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode one audio stream to float32 mono in [-1, 1] at sample_rate (streamed, no temp files).

    `stream` counts audio streams only (0 = the first); offset_s and duration_s cut a span.
    Raises ItemError with a one-line reason and fix for anything wrong with the file.
    """
    raw = check_media_file(path)
    name = display_name(raw)
    try:
        stream = 0 if stream is None else int(stream)
    except (TypeError, ValueError):
        raise ItemError(
            f"{name}: --audio-stream {stream!r} is not a number; pass 0, 1, ..."
        ) from None
    if stream < 0:
        raise ItemError(f"{name}: --audio-stream {stream} is negative; pass 0 for the first")
    shortfall = wav_shortfall(raw)
    if shortfall:
        raise ItemError(
            f"{name}: file is truncated: its header promises {shortfall[0]:.2f} s of audio but it "
            f"holds {shortfall[1]:.2f} s; copy or download it again"
        )
    input_args: dict[str, object] = {"threads": 0}
    if offset_s:
        input_args["ss"] = f"{offset_s:.6f}"  # input seeking: fast, and sample-exact for audio
    if duration_s is not None:
        input_args["t"] = f"{duration_s:.6f}"
    command = (
        ffmpeg.input(_ffmpeg_input(raw), **input_args)[f"a:{stream}"]
        .output("pipe:", format="f32le", acodec="pcm_f32le", ac=1, ar=sample_rate, vn=None)
        .compile(cmd=[ffmpeg_exe(), "-nostdin", "-hide_banner", "-loglevel", "error"])
    )
    returncode, audio, err_bytes = _run_samples(command, sample_rate)
    stderr = err_bytes.decode("utf-8", "replace")
    if returncode != 0:
        if _NO_MATCH in stderr:
            raise _stream_error(raw, name, stream)
        raise _undecodable(name, stderr)
    if _PARTIAL in stderr:
        raise ItemError(f"{name}: file is truncated (it ends inside its media data); copy it again")
    if stderr.strip():  # e.g. a damaged frame: ffmpeg decodes what it can and exits 0
        log.warning("%s: decoded with errors (%s); the file may be damaged", name, _reason(stderr))
    if audio.size == 0:
        where = f"at offset {offset_s:g} s" if offset_s else "in the file"
        raise ItemError(
            f"{name}: decoded to no audio samples {where}; check the file and the offset"
        )
    # pcm_f32le passes float sources through unclipped; keep the documented range.
    return np.clip(audio, -1.0, 1.0, out=audio)
