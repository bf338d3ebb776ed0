"""Decoding and probing real media files built with the ffmpeg binary, and every error path."""

from __future__ import annotations

import logging
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from speechkit.errors import ItemError, SpeechkitError
from speechkit.media import ffmpeg as media_ffmpeg
from speechkit.media.ffmpeg import decode_audio, ffmpeg_exe, probe

SR = 16000  # Hz, the decode rate under test
DURATION_S = 2.0  # s, every generated clip
LENGTH_TOL_S = 0.06  # s; lossy codecs may add or trim a frame of padding
FREQ_TOL_HZ = 3.0  # Hz; the FFT bin is 0.5 Hz over 2 s
SINE = f"sine=frequency=440:sample_rate=44100:duration={DURATION_S}"
VIDEO = f"testsrc=size=64x64:rate=25:duration={DURATION_S}"


def dominant_hz(audio: np.ndarray, sample_rate: int = SR) -> float:
    """The strongest frequency in the signal."""
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
    return float(np.fft.rfftfreq(len(audio), 1 / sample_rate)[spectrum.argmax()])


@pytest.fixture(scope="module")
def build(ffmpeg, tmp_path_factory):
    """Make a media file in this module's own folder with the given ffmpeg arguments."""
    root = os.fsencode(tmp_path_factory.mktemp("test_media"))

    def make(name: str | bytes, *args: str) -> Path:
        out = os.path.join(root, os.fsencode(name))
        subprocess.run([ffmpeg, "-nostdin", "-y", "-loglevel", "error", *args, out], check=True)
        return Path(os.fsdecode(out))

    return make


@pytest.fixture(scope="module")
def av_mp4(build) -> Path:
    """Video (h264) + audio (aac, 440 Hz) in one mp4, moov atom at the end."""
    return build("av.mp4", "-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", SINE, "-shortest")


@pytest.fixture(scope="module")
def two_audio(build) -> Path:
    """One video and two audio streams: 440 Hz first, 1000 Hz second."""
    return build(
        "two_audio.mkv",
        *("-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", SINE),
        *("-f", "lavfi", "-i", f"sine=frequency=1000:duration={DURATION_S}"),
        *("-map", "0", "-map", "1", "-map", "2"),
    )


@pytest.mark.parametrize(
    "name, args",
    [
        ("tone.wav", ()),
        ("tone.flac", ("-ac", "2")),
        ("tone.mp3", ()),
        ("tone.ogg", ()),
        ("tone.m4a", ()),
        ("tone.aiff", ()),
        ("tone.mkv", ()),
        ("tone.webm", ()),
        ("tone_surround.flac", ("-ac", "6")),
    ],
)
def test_audio_formats_decode_to_16k_mono_float(build, name, args):
    path = build(name, "-f", "lavfi", "-i", SINE, *args)
    audio = decode_audio(str(path))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert abs(len(audio) / SR - DURATION_S) < LENGTH_TOL_S
    assert -1.0 <= audio.min() and audio.max() <= 1.0 and audio.std() > 0.05
    assert abs(dominant_hz(audio) - 440) < FREQ_TOL_HZ


@pytest.mark.parametrize(
    "name, args",
    [
        ("clip.mov", ()),
        ("clip.mpg", ()),  # MPEG-1 video + MP2 audio, like the GRID corpus
        ("clip.webm", ("-c:v", "libvpx", "-deadline", "realtime")),
    ],
)
def test_video_containers_decode_their_audio(build, name, args):
    path = build(name, "-f", "lavfi", "-i", VIDEO, "-f", "lavfi", "-i", SINE, *args, "-shortest")
    audio = decode_audio(path)
    assert abs(len(audio) / SR - DURATION_S) < 0.1  # video muxers pad to a frame boundary
    assert abs(dominant_hz(audio) - 440) < FREQ_TOL_HZ


def test_mp4_with_video_decodes_audio_and_probes_both_streams(av_mp4):
    audio = decode_audio(av_mp4)
    assert abs(len(audio) / SR - DURATION_S) < LENGTH_TOL_S
    assert abs(dominant_hz(audio) - 440) < FREQ_TOL_HZ
    info = probe(av_mp4)
    assert info.path == str(av_mp4)
    assert info.duration_s == pytest.approx(DURATION_S, abs=0.05)
    (video,) = info.video_streams
    (sound,) = info.audio_streams
    assert (video.index, video.codec, video.width, video.height, video.fps) == (
        0, "h264", 64, 64, 25.0,
    )  # fmt: skip
    assert (sound.index, sound.codec, sound.sample_rate, sound.channels) == (1, "aac", 44100, 1)
    assert sound.fps is None and video.sample_rate is None


def test_probe_reads_pcm_wav_and_stereo_flac(build):
    wav = build("probe.wav", "-f", "lavfi", "-i", "sine=sample_rate=16000:duration=1.5")
    (s,) = probe(wav).streams
    assert (s.kind, s.codec, s.sample_rate, s.channels) == ("audio", "pcm_s16le", 16000, 1)
    assert probe(wav).duration_s == pytest.approx(1.5, abs=0.01)
    flac = build("probe.flac", "-f", "lavfi", "-i", SINE, "-ac", "2", "-ar", "48000")
    (s,) = probe(flac).audio_streams
    assert (s.codec, s.sample_rate, s.channels) == ("flac", 48000, 2)


def test_probe_leaves_out_mp3_cover_art(build):
    cover = build("cover.png", "-f", "lavfi", "-i", "testsrc=size=32x32", "-frames:v", "1")
    mp3 = build(
        "cover.mp3",
        *("-f", "lavfi", "-i", SINE, "-i", str(cover), "-map", "0", "-map", "1"),
        *("-c:v", "png", "-disposition:v", "attached_pic", "-id3v2_version", "3"),
    )
    info = probe(mp3)
    assert info.video_streams == () and len(info.audio_streams) == 1
    assert abs(dominant_hz(decode_audio(mp3)) - 440) < FREQ_TOL_HZ


def test_audio_stream_selects_among_audio_streams_only(two_audio):
    info = probe(two_audio)
    assert [s.kind for s in info.streams] == ["video", "audio", "audio"]
    assert abs(dominant_hz(decode_audio(two_audio)) - 440) < FREQ_TOL_HZ
    assert abs(dominant_hz(decode_audio(two_audio, stream=0)) - 440) < FREQ_TOL_HZ
    assert abs(dominant_hz(decode_audio(two_audio, stream=1)) - 1000) < FREQ_TOL_HZ


def test_out_of_range_audio_stream_names_the_valid_range(two_audio):
    with pytest.raises(ItemError) as e:
        decode_audio(two_audio, stream=2)
    msg = str(e.value)
    assert str(two_audio) in msg and "--audio-stream 2" in msg and "2 audio stream(s)" in msg
    assert "--audio-stream 0 to 1" in msg and "\n" not in msg
    with pytest.raises(ItemError, match="negative"):
        decode_audio(two_audio, stream=-1)
    with pytest.raises(ItemError, match="'second' is not a number"):
        decode_audio(two_audio, stream="second")
    assert abs(dominant_hz(decode_audio(two_audio, stream="1")) - 1000) < FREQ_TOL_HZ  # manifests


def test_sample_rate_offset_and_duration_cut_the_audio(av_mp4):
    assert len(decode_audio(av_mp4, sample_rate=8000)) == pytest.approx(8000 * DURATION_S, abs=800)
    part = decode_audio(av_mp4, offset_s=0.5, duration_s=1.0)
    assert len(part) == pytest.approx(SR, abs=2)
    assert abs(dominant_hz(part) - 440) < FREQ_TOL_HZ
    tail = decode_audio(av_mp4, offset_s=1.5)
    assert len(tail) / SR == pytest.approx(0.5, abs=LENGTH_TOL_S)


def test_long_audio_decodes_every_sample_into_one_writable_array(build):
    # Ten minutes: the sample buffer starts at one minute and grows several times.
    path = build("ten_minutes.flac", "-f", "lavfi", "-i",
                 "sine=frequency=440:sample_rate=16000:duration=600", "-af", "volume=2.0")
    audio = decode_audio(path)
    assert audio.dtype == np.float32 and audio.flags.writeable and audio.flags.c_contiguous
    assert len(audio) == 600 * SR
    assert float(np.abs(audio).max()) <= 1.0  # clipped in place to the documented range
    assert abs(dominant_hz(audio[-2 * SR:]) - 440) < FREQ_TOL_HZ  # the end is real audio


def test_offset_past_the_end_is_zero_samples_error(av_mp4):
    with pytest.raises(ItemError, match=r"decoded to no audio samples at offset 5 s"):
        decode_audio(av_mp4, offset_s=5.0)


def test_video_only_file_says_it_has_no_audio(build):
    path = build("video_only.mp4", "-f", "lavfi", "-i", VIDEO)
    with pytest.raises(ItemError) as e:
        decode_audio(path)
    assert str(e.value) == (
        f"{path}: has no audio stream (video only); pass a file with sound, "
        "or --audio-stream to choose another"
    )
    assert probe(path).audio_streams == ()


def test_truncated_mp4_is_a_corrupt_file_error(av_mp4, tmp_path):
    cut = tmp_path / "truncated.mp4"
    cut.write_bytes(av_mp4.read_bytes()[: av_mp4.stat().st_size // 2])  # moov atom is lost
    for call in (decode_audio, probe):
        with pytest.raises(ItemError) as e:
            call(cut)
        msg = str(e.value)
        assert msg.startswith(f"{cut}: ffmpeg cannot read it (moov atom not found")
        assert "corrupt, truncated or not audio/video" in msg and "\n" not in msg
        assert "@ 0x" not in msg  # ffmpeg's "[in#0 @ 0x...]" log prefixes are stripped


def test_mp4_cut_inside_its_media_data_is_truncated(build, tmp_path):
    whole = build("faststart.mp4", "-f", "lavfi", "-i", SINE, "-movflags", "+faststart")
    cut = tmp_path / "half.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # moov intact, data cut
    with pytest.raises(ItemError, match=r"half.mp4: file is truncated \(it ends inside"):
        decode_audio(cut)


def test_wav_shorter_than_its_header_is_truncated(build, tmp_path):
    whole = build("canonical.wav", "-f", "lavfi", "-i", SINE, "-bitexact", "-map_metadata", "-1")
    data = whole.read_bytes()
    assert data[36:40] == b"data"  # the plain 44-byte header
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:44] + os.urandom(2000))  # valid PCM to ffmpeg: it would not complain
    with pytest.raises(ItemError) as e:
        decode_audio(cut)
    assert str(e.value) == (
        f"{cut}: file is truncated: its header promises 2.00 s of audio but it holds 0.02 s; "
        "copy or download it again"
    )
    nearly = tmp_path / "nearly.wav"
    nearly.write_bytes(data[:-8820])  # 0.1 s short at 44.1 kHz 16-bit: within tolerance
    assert len(decode_audio(nearly)) == pytest.approx(SR * (DURATION_S - 0.1), abs=2)


def test_damaged_frames_decode_with_a_warning(build, tmp_path, caplog):
    whole = build("damaged.flac", "-f", "lavfi", "-i", SINE)
    cut = tmp_path / "half.flac"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])  # ends inside a frame
    with caplog.at_level(logging.WARNING, logger="speechkit"):
        audio = decode_audio(cut)
    assert 0 < len(audio) < SR * DURATION_S
    assert "decoded with errors" in caplog.text and str(cut) in caplog.text


def test_text_file_named_wav_is_not_media(tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not audio\n")
    with pytest.raises(ItemError) as e:
        decode_audio(fake)
    assert "Invalid data found when processing input" in str(e.value)
    assert str(fake) in str(e.value)


def test_empty_missing_and_directory_paths_say_what_is_wrong(tmp_path):
    empty = tmp_path / "empty.wav"
    empty.touch()
    cases = {
        empty: "file is empty (0 bytes)",
        tmp_path / "absent.wav": "no such file; check the path",
        tmp_path: "is a directory",
    }
    for path, expected in cases.items():
        for call in (decode_audio, probe):
            with pytest.raises(ItemError, match=re.escape(expected)) as e:
                call(path)
            assert str(e.value).startswith(f"{path}: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files regardless of permissions")
def test_unreadable_file_says_permission_denied(av_mp4, tmp_path):
    locked = tmp_path / "locked.mp4"
    locked.write_bytes(av_mp4.read_bytes())
    locked.chmod(0)
    try:
        with pytest.raises(ItemError, match="permission denied; make it readable"):
            decode_audio(locked)
    finally:
        locked.chmod(0o600)


def test_permission_error_message_without_needing_a_non_root_user(av_mp4, monkeypatch):
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(media_ffmpeg, "open", denied, raising=False)
    with pytest.raises(ItemError) as e:
        decode_audio(av_mp4)
    assert str(e.value) == (
        f"{av_mp4}: permission denied; make it readable (chmod +r) or run as a user who can"
    )


def test_non_utf8_file_name_round_trips(build):
    path = build(b"caf\xe9.wav", "-f", "lavfi", "-i", SINE)
    as_str = str(path)  # holds a surrogate escape for the 0xE9 byte
    assert os.fsencode(as_str).endswith(b"caf\xe9.wav")
    for given in (as_str, os.fsencode(as_str), path):
        audio = decode_audio(given)
        assert abs(dominant_hz(audio) - 440) < FREQ_TOL_HZ
    assert probe(as_str).path == as_str
    with pytest.raises(ItemError) as e:
        decode_audio(as_str.replace(".wav", "-missing.wav"))
    msg = str(e.value)
    msg.encode("utf-8")  # printable: no lone surrogates reach the terminal
    assert "caf\\xe9-missing.wav: no such file" in msg


@pytest.mark.parametrize("name", ["a:b.wav", "-dash.wav", "with space.wav"])
def test_awkward_file_names_are_files_not_protocols_or_options(build, name):
    path = build(name, "-f", "lavfi", "-i", SINE)
    assert abs(dominant_hz(decode_audio(path)) - 440) < FREQ_TOL_HZ


def test_ffmpeg_exe_honours_the_environment_override(monkeypatch, ffmpeg):
    monkeypatch.setenv("SPEECHKIT_FFMPEG", ffmpeg)
    assert ffmpeg_exe() == ffmpeg
    monkeypatch.setenv("SPEECHKIT_FFMPEG", "/nonexistent/ffmpeg")
    with pytest.raises(SpeechkitError, match="SPEECHKIT_FFMPEG=/nonexistent/ffmpeg"):
        ffmpeg_exe()


def test_ffmpeg_exe_falls_back_to_imageio_ffmpeg(monkeypatch):
    imageio_ffmpeg = pytest.importorskip("imageio_ffmpeg")
    monkeypatch.delenv("SPEECHKIT_FFMPEG", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    found = media_ffmpeg._default_ffmpeg.__wrapped__()  # bypass the per-process cache
    assert found == imageio_ffmpeg.get_ffmpeg_exe()
    result = subprocess.run([found, "-version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("ffmpeg version")
