"""The second landmark backend, MediaPipe face mesh, on the made talking-face clips
(tests/face_media.py) and, in the devset group, on the development set's real clips (runs where
`speechkit[mediapipe]` is installed; it needs numpy 1.x)."""

from __future__ import annotations

import pytest

from speechkit.errors import ItemError
from speechkit.media.ffmpeg import probe
from speechkit.media.lips import lip_stream

pytest.importorskip("mediapipe")


def assert_every_frame_cropped_with_the_mouth_inside_the_face(path):
    stream = lip_stream(path, backend="mediapipe")
    assert stream.backend == "mediapipe" and stream.frames.shape[1:] == (88, 88)
    assert abs(len(stream.frames) - probe(path).duration_s * 25) <= 1
    assert stream.face_frames == len(stream.frames)
    face, mouth = stream.face_boxes, stream.mouth_boxes
    assert (mouth[:, :2] >= face[:, :2]).all() and (mouth[:, 2:] <= face[:, 2:]).all()


@pytest.mark.parametrize("name", ["grid", "ted"])
def test_mediapipe_crops_every_frame_with_the_mouth_inside_the_face(face_clips, name, tmp_path,
                                                                     monkeypatch):
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path))
    assert_every_frame_cropped_with_the_mouth_inside_the_face(face_clips[name].path)


@pytest.mark.parametrize("name", ["lipnet_grid_bbaf2n.mpg", "laalm_sample1.mp4"])
def test_mediapipe_crops_real_talking_face_clips(dev_dir, name, tmp_path, monkeypatch):
    monkeypatch.setenv("SPEECHKIT_HOME", str(tmp_path))
    assert_every_frame_cropped_with_the_mouth_inside_the_face(dev_dir / "avsr" / name)


def test_mediapipe_finds_no_face_in_a_test_pattern(make_media):
    path = make_media("pattern.mp4", "-f", "lavfi", "-i", "testsrc=size=160x120:rate=25:duration=1")
    with pytest.raises(ItemError, match="no face found"):
        lip_stream(path, backend="mediapipe", cache=False)
