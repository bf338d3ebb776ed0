"""dlib's HOG face detector and 68-point shape predictor (Kazemi & Sullivan 2014).

The predictor file ships in `face-recognition-models`; it was trained on iBUG 300-W, whose
licence allows research and non-commercial use only.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.media.lips.backends.base import Box, LandmarkBackend

PREDICTOR = "shape_predictor_68_face_landmarks.dat"
INSTALL = "pip install 'speechkit[lips]' (dlib-bin and face-recognition-models)"
SMALL_FRAME = 400  # px; a frame this small is searched again at 2x when no face is found at 1x
# (the HOG detector's smallest face is about 80 px)


def predictor_path() -> Path:
    """The 68-point model inside face-recognition-models, found without importing the package
    (its __init__ needs pkg_resources)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise SpeechkitError(f"the dlib lip backend needs the 68-point landmark model: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / PREDICTOR
    if not path.is_file():
        raise SpeechkitError(f"{path} is missing: reinstall it with `{INSTALL}`")
    return path


class DlibBackend(LandmarkBackend):
    name = "dlib"
    rgb = False

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError:
            raise SpeechkitError(f"the dlib lip backend needs dlib: {INSTALL}") from None
        self._dlib = dlib
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(predictor_path()))

    def detect(self, frame: np.ndarray) -> list[Box]:
        frame = np.ascontiguousarray(frame)
        found = self._detector(frame, 0)
        if not found and max(frame.shape[:2]) < SMALL_FRAME:
            found = self._detector(frame, 1)
        return [(r.left(), r.top(), r.right(), r.bottom()) for r in found]

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        rect = self._dlib.rectangle(*(int(round(v)) for v in box))
        shape = self._predictor(np.ascontiguousarray(frame), rect)
        return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float32)
