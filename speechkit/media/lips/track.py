"""Follow one face through a video: detect at a lower resolution every few frames, carry the
face box from frame to frame with the landmarks in between (detection is the slow part)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from speechkit.media.lips.backends.base import Box, LandmarkBackend

DETECT_EVERY = 5  # frames between face detections (0.2 s at 25 fps); landmarks carry the box
DETECT_SIDE = 320  # px; detection runs on the frame scaled down to this longer side
MIN_IOU = 0.3  # a detection overlapping the tracked face this much is the same face
SEARCH_EVERY = DETECT_EVERY  # frames between detections after SEARCH_CLOSELY faceless frames
SEARCH_CLOSELY = 25  # frames (1 s at 25 fps) searched one by one after the face is lost


@dataclass
class Track:
    """Per-frame landmarks of the followed face; NaN where no face was found."""

    landmarks: np.ndarray  # [T, 68, 2] float32, frame pixels
    face_boxes: np.ndarray  # [T, 4] float32 (x0, y0, x1, y1); NaN where no face


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _iou(a: Box, b: Box) -> float:
    inter = _area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))
    union = _area(a) + _area(b) - inter
    return inter / union if union > 0 else 0.0


def pick_face(boxes: list[Box], tracked: Box | None) -> Box | None:
    """The tracked face when a detection overlaps it, else the largest face."""
    if not boxes:
        return None
    if tracked is not None:
        best = max(boxes, key=lambda b: _iou(b, tracked))
        if _iou(best, tracked) >= MIN_IOU:
            return best
    return max(boxes, key=_area)


def _detect(backend: LandmarkBackend, frame: np.ndarray, side: int) -> list[Box]:
    """Detect on a downscaled copy; boxes in the full frame's pixels."""
    scale = min(1.0, side / max(frame.shape[:2]))
    small = frame if scale == 1.0 else cv2.resize(
        frame, (round(frame.shape[1] * scale), round(frame.shape[0] * scale)),
        interpolation=cv2.INTER_AREA)
    return [tuple(v / scale for v in b) for b in backend.detect(small)]


class _Follower:
    """The face box in the detector's convention, moved with the landmarks between detections:
    the shape predictor expects boxes like the ones its detector draws."""

    def __init__(self, box: Box, points: np.ndarray):
        self.box = box
        self.center, self.size = _spread(points)

    def moved(self, points: np.ndarray) -> Box:
        center, size = _spread(points)
        k = size / self.size if self.size > 0 else 1.0
        bx, by = (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2
        hw, hh = (self.box[2] - self.box[0]) * k / 2, (self.box[3] - self.box[1]) * k / 2
        cx, cy = bx + center[0] - self.center[0], by + center[1] - self.center[1]
        return (cx - hw, cy - hh, cx + hw, cy + hh)


def _spread(points: np.ndarray) -> tuple[np.ndarray, float]:
    center = points.mean(axis=0)
    return center, float(np.sqrt(((points - center) ** 2).sum(axis=1).mean()))


def _search_now(missing: int) -> bool:
    """Whether to run the detector on a frame with no face in hand: on each frame of the first
    second after the face was lost (a hand or a turn of the head), then every SEARCH_EVERY
    frames (a video without a face costs a fifth of the detections)."""
    return missing < SEARCH_CLOSELY or missing % SEARCH_EVERY == 0


def track_face(frames: Iterable[np.ndarray], backend: LandmarkBackend,
               detect_every: int | None = None, detect_side: int | None = None,
               keep=None) -> Track:
    """Landmarks of the largest face, followed across frames. `keep(frame)` is called with
    every frame (the caller stores what it needs for cropping)."""
    detect_every = detect_every or DETECT_EVERY
    detect_side = detect_side or DETECT_SIDE
    backend.reset()
    marks, boxes = [], []
    box: Box | None = None
    follower: _Follower | None = None
    since, missing = detect_every, 0
    for frame in frames:
        if keep is not None:
            keep(frame)
        if since >= detect_every or (box is None and _search_now(missing)):
            found = pick_face(_detect(backend, frame, detect_side), box)
            since, follower = 0, None
            box = found
        if box is None:  # no face here: look again soon (every frame just after one was lost)
            marks.append(np.full((68, 2), np.nan, np.float32))
            boxes.append(np.full(4, np.nan, np.float32))
            missing += 1
            continue
        missing = 0
        points = backend.landmarks(frame, box)
        if np.isnan(points).any():
            marks.append(np.full((68, 2), np.nan, np.float32))
            boxes.append(np.full(4, np.nan, np.float32))
            box = None
            continue
        marks.append(points)
        boxes.append(np.asarray(box, np.float32))
        follower = follower or _Follower(box, points)
        box = follower.moved(points)
        since += 1
    if not marks:
        return Track(np.zeros((0, 68, 2), np.float32), np.zeros((0, 4), np.float32))
    return Track(np.stack(marks), np.stack(boxes))
