"""Media input: ffmpeg decoding and probing, and segmentation of long audio."""

from speechkit.media.ffmpeg import MediaInfo, StreamInfo, decode_audio, ffmpeg_exe, probe
from speechkit.media.vad import Span, is_silent, split_long_audio

__all__ = [
    "MediaInfo",
    "Span",
    "StreamInfo",
    "decode_audio",
    "ffmpeg_exe",
    "is_silent",
    "probe",
    "split_long_audio",
]
