"""The crop geometry on known landmarks: gap filling, the 12-frame smoothing, the alignment
to the mean face and the model's input transform."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("cv2")

from speechkit.media.lips import geometry as geo  # noqa: E402


def test_frames_without_a_face_are_filled_linearly_and_held_at_the_ends():
    marks = np.full((6, 68, 2), np.nan, np.float32)
    marks[1], marks[4] = 10.0, 40.0
    filled = geo.interpolate_missing(marks)
    assert filled[:, 0, 0].tolist() == [10.0, 10.0, 20.0, 30.0, 40.0, 40.0]


def test_smoothing_averages_the_frames_within_six_either_side():
    # auto_avsr's 12-frame window: frame t averages t-6 .. t+6 (fewer at the clip's ends).
    step = np.zeros((40, 68, 2), np.float32)
    step[20:] = 13.0
    out = geo.smooth(step)[:, 0, 0]
    assert out[13] == 0.0 and out[27] == 13.0
    np.testing.assert_allclose(out[14:27], np.arange(1, 14), atol=1e-5)
    flat = np.full((3, 68, 2), 5.0, np.float32)  # shorter than the window: stays put
    np.testing.assert_allclose(geo.smooth(flat), flat)


def test_a_face_is_aligned_onto_the_mean_face_with_its_mouth_centered():
    # The mean face turned 30 degrees, doubled in size and moved: the transform undoes it.
    a = np.deg2rad(30)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], np.float32)
    face = geo.mean_face() @ rot.T * 2.0 + np.array([300.0, 200.0], np.float32)
    m = geo.crop_transform(face)
    np.testing.assert_allclose(np.linalg.det(m[:, :2]), 0.25, rtol=1e-3)  # scale 1/2 each way
    mouth = face[geo.MOUTH] @ m[:, :2].T + m[:, 2]
    np.testing.assert_allclose(mouth.mean(axis=0), [48.0, 48.0], atol=1e-2)
    aligned = face @ m[:, :2].T + m[:, 2]
    expected = geo.mean_face() - geo.mean_face()[geo.MOUTH].mean(axis=0) + 48.0
    np.testing.assert_allclose(aligned, expected, atol=0.05)


def test_model_input_is_the_normalized_center_88():
    crops = np.zeros((2, 96, 96), np.uint8)
    crops[:, 4:92, 4:92] = 255  # the center; the 4-pixel border is cut away
    x = geo.model_input(crops)
    assert x.shape == (2, 88, 88) and x.dtype == np.float32
    np.testing.assert_allclose(x, (1.0 - 0.421) / 0.165, rtol=1e-6)
