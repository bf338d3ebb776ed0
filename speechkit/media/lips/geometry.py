"""From per-frame landmarks to mouth crops: fill the gaps, smooth, align to a mean face with
a similarity transform, cut 96x96 around the mouth; and the model's input transform
(auto_avsr / Llama-AVSR protocol)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import cv2
import numpy as np

SMOOTH_WINDOW = 12  # frames; landmarks are averaged over this window (auto_avsr)
CROP_SIZE = 96  # px; the mouth crop stored and shown
MODEL_SIZE = 88  # px; the model reads the center 88x88 of the crop (test-time center crop)
MEAN, STD = 0.421, 0.165  # grayscale normalization of the crops (LRS3 statistics, auto_avsr)
FACE_SCALE = 160.0  # px per mean-face unit: the mouth is about 56 px wide in the 96 px crop
# Points the similarity transform is fitted on: they move little when the mouth moves
# (nose bridge and tip, eye corners, mouth corners), as in auto_avsr.
STABLE_POINTS = (28, 33, 36, 39, 42, 45, 48, 54)
MOUTH = slice(48, 68)  # iBUG 300-W mouth landmarks


@functools.lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """The 68-point mean face [68, 2] in FACE_SCALE pixels (data file beside this module)."""
    doc = json.loads((Path(__file__).parent / "mean_face_68.json").read_text(encoding="utf-8"))
    return np.asarray(doc["points"], np.float32) * FACE_SCALE


def interpolate_missing(landmarks: np.ndarray) -> np.ndarray:
    """Fill frames with no face (NaN) linearly from the nearest frames that have one; before
    the first and after the last face, hold the nearest. Needs at least one face frame."""
    have = ~np.isnan(landmarks).any(axis=(1, 2))
    if have.all():
        return landmarks.astype(np.float32, copy=True)
    t = np.arange(len(landmarks))
    flat = landmarks.reshape(len(landmarks), -1)
    out = np.empty_like(flat)
    for j in range(flat.shape[1]):
        out[:, j] = np.interp(t, t[have], flat[have, j])
    return out.reshape(landmarks.shape).astype(np.float32)


def smooth(landmarks: np.ndarray, window: int = SMOOTH_WINDOW) -> np.ndarray:
    """Centered moving average over `window` frames (fewer at the ends of the clip)."""
    n = len(landmarks)
    half = window // 2
    csum = np.concatenate([np.zeros((1, *landmarks.shape[1:])), np.cumsum(landmarks, axis=0)])
    lo = np.clip(np.arange(n) - half, 0, n)
    hi = np.clip(np.arange(n) + half, 0, n - 1) + 1
    return ((csum[hi] - csum[lo]) / (hi - lo)[:, None, None]).astype(np.float32)


def crop_transform(points: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift) that maps a frame onto the mean
    face and puts the mouth center at the middle of a CROP_SIZE square."""
    src = points[list(STABLE_POINTS)].astype(np.float32)
    dst = mean_face()[list(STABLE_POINTS)]
    m, _ = cv2.estimateAffinePartial2D(src, dst, method=cv2.LMEDS)
    if m is None:  # degenerate points (a collapsed face): least squares on all of them
        m, _ = cv2.estimateAffinePartial2D(points.astype(np.float32), mean_face())
    mouth = points[MOUTH] @ m[:, :2].T + m[:, 2]
    m = m.copy()
    m[:, 2] += CROP_SIZE / 2 - mouth.mean(axis=0)
    return m


def mouth_crop(frame: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The CROP_SIZE x CROP_SIZE grayscale mouth crop of one frame."""
    gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    return cv2.warpAffine(gray, crop_transform(points), (CROP_SIZE, CROP_SIZE),
                          flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def mouth_boxes(landmarks: np.ndarray) -> np.ndarray:
    """Bounding box (x0, y0, x1, y1) of the mouth landmarks, per frame [T, 4]."""
    mouth = landmarks[:, MOUTH]
    return np.concatenate([mouth.min(axis=1), mouth.max(axis=1)], axis=1).astype(np.float32)


def center_crops(crops: np.ndarray) -> np.ndarray:
    """[T, 96, 96] uint8 crops -> [T, 88, 88] uint8: the test-time center crop."""
    lo = (CROP_SIZE - MODEL_SIZE) // 2
    return np.ascontiguousarray(crops[:, lo:lo + MODEL_SIZE, lo:lo + MODEL_SIZE])


def model_input(crops: np.ndarray) -> np.ndarray:
    """[T, 96, 96] uint8 crops -> [T, 88, 88] float32: the center crop, /255, normalized."""
    center = center_crops(crops).astype(np.float32) / 255.0
    return (center - MEAN) / STD
