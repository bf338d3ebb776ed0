"""The seam for face-landmark backends: find faces in a frame, then 68 landmarks for one face."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the frame
N_POINTS = 68  # iBUG 300-W landmark scheme (dlib order): 0-16 jaw, 36-47 eyes, 48-67 mouth


class LandmarkBackend(ABC):
    """One face-landmark library. The tracker calls `detect` on a downscaled frame every few
    frames and `landmarks` on every frame, with the face box it tracks."""

    name: str
    rgb: bool = False  # reads RGB frames ([H, W, 3]); else grayscale ([H, W])

    def reset(self) -> None:  # noqa: B027 (an optional hook: most backends keep no state)
        """Forget what was tracked: a new clip starts (backends that track between calls)."""

    @abstractmethod
    def detect(self, frame: np.ndarray) -> list[Box]:
        """Boxes of the faces in the frame (any order; none when there is no face)."""

    @abstractmethod
    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        """The 68 landmarks [68, 2] (x, y) of the face in `box`, in the frame's pixels."""
