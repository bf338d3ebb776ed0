"""`speechkit lips VIDEO... --out DIR`: a crop video and a contact sheet per input (on the made
GRID-like talking-face clip, tests/face_media.py)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import cv2
import numpy as np
import pytest

from speechkit.media.ffmpeg import decode_audio, probe
from tests.test_cli import cli_env

pytest.importorskip("dlib")


def lips(*args, home) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "speechkit", "lips", *map(str, args)],
                          env=cli_env(SPEECHKIT_HOME=str(home)), capture_output=True, text=True,
                          timeout=300)


def test_lips_writes_a_crop_video_and_a_contact_sheet_per_video(face_video, make_media, tmp_path):
    tone = make_media("tone.wav", "-f", "lavfi", "-i", "sine=frequency=440:duration=1")
    r = lips(face_video, tone, "--out", tmp_path / "out", home=tmp_path / "home")
    assert r.returncode == 1  # the audio file has no lips; the video's are written all the same
    assert "face_grid.mpg: 75 frames, a face in 75" in r.stdout
    assert "tone.wav: has no video stream" in r.stderr
    video = probe(tmp_path / "out" / "face_grid.mp4")
    (v,) = video.video_streams
    assert (v.width, v.height, v.fps) == (96, 96, 25.0) and len(video.audio_streams) == 1
    assert abs(video.duration_s - 3.0) < 0.1
    assert len(decode_audio(tmp_path / "out" / "face_grid.mp4")) > 2.9 * 16000
    sheet = cv2.imread(str(tmp_path / "out" / "face_grid.png"))
    assert sheet.shape == (6 * 96, 8 * 96, 3) and sheet.std() > 20
    assert not (tmp_path / "out" / "tone.mp4").exists()


def test_lips_reuses_cached_crops_on_a_rerun(face_video, tmp_path):
    first = lips(face_video, "--out", tmp_path / "a", home=tmp_path / "home")
    entries = list((tmp_path / "home" / "lips").rglob("*.npz"))
    assert first.returncode == 0 and len(entries) == 1
    stamp = entries[0].stat().st_mtime_ns
    again = lips(face_video, "--out", tmp_path / "b", home=tmp_path / "home")
    assert again.returncode == 0 and entries[0].stat().st_mtime_ns == stamp
    a = cv2.imread(str(tmp_path / "a" / "face_grid.png"))
    b = cv2.imread(str(tmp_path / "b" / "face_grid.png"))
    assert np.array_equal(a, b)


@pytest.mark.skipif(importlib.util.find_spec("mediapipe") is not None, reason="mediapipe installed")
def test_a_missing_mediapipe_backend_names_the_install(face_video, tmp_path):
    r = lips(face_video, "--out", tmp_path, "--backend", "mediapipe",
             home=tmp_path / "home")
    assert r.returncode == 2
    assert "mediapipe lip backend is not installed" in r.stderr
    assert "pip install 'speechkit[mediapipe]'" in r.stderr
