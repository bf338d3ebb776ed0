"""MediaPipe face detection (BlazeFace) and face mesh (478 points), mapped onto the 68-point
iBUG scheme so the rest of the pipeline is the same as with dlib.

Optional: mediapipe 0.10.14 is the last release whose wheel ships the models, and it needs
numpy < 2: `pip install 'speechkit[mediapipe]'` installs both.
"""

from __future__ import annotations

import numpy as np

from speechkit.errors import SpeechkitError
from speechkit.media.lips.backends.base import Box, LandmarkBackend

INSTALL = "pip install 'speechkit[mediapipe]' (mediapipe 0.10.14, numpy<2) or use --backend dlib"
CROP_MARGIN = 0.4  # the mesh reads the face box grown by this fraction on each side
MIN_SCORE = 0.5  # BlazeFace detection confidence

# Face-mesh vertex for each of the 68 iBUG points, read off MediaPipe's canonical face mesh:
# jaw 0-16, brows 17-26, nose 27-35, eyes 36-47, outer lips 48-59, inner lips 60-67.
MESH_TO_68 = (
    127, 234, 93, 132, 58, 172, 150, 149, 152, 378, 379, 397, 288, 361, 323, 454, 356,
    70, 63, 105, 66, 107, 336, 296, 334, 293, 300,
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181,
    78, 82, 13, 312, 308, 317, 14, 87,
)  # fmt: skip


def _import_mediapipe():
    try:
        import mediapipe
    except ImportError as e:
        raise SpeechkitError(f"the mediapipe lip backend is not installed ({e}): {INSTALL}") from None
    if not hasattr(mediapipe, "solutions"):
        raise SpeechkitError(f"mediapipe {getattr(mediapipe, '__version__', '?')} ships no face "
                             f"models: {INSTALL}")
    return mediapipe


class MediapipeBackend(LandmarkBackend):
    name = "mediapipe"
    rgb = True

    def __init__(self) -> None:
        mp = _import_mediapipe()
        # model_selection=1: the full-range detector (faces up to about 5 m)
        self._detector = mp.solutions.face_detection.FaceDetection(
            model_selection=1, min_detection_confidence=MIN_SCORE)
        self._face_mesh = mp.solutions.face_mesh.FaceMesh
        self.reset()

    def reset(self) -> None:
        # Video mode: the mesh follows the face from the previous frame's crop instead of
        # detecting it again (measured 2-4x faster on the development clips).
        self._mesh = self._face_mesh(static_image_mode=False, max_num_faces=1)

    def detect(self, frame: np.ndarray) -> list[Box]:
        h, w = frame.shape[:2]
        found = self._detector.process(np.ascontiguousarray(frame)).detections or []
        boxes = []
        for d in found:
            b = d.location_data.relative_bounding_box
            boxes.append((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h))
        return boxes

    def landmarks(self, frame: np.ndarray, box: Box) -> np.ndarray:
        h, w = frame.shape[:2]
        x0, y0, x1, y1 = box
        mx, my = (x1 - x0) * CROP_MARGIN, (y1 - y0) * CROP_MARGIN
        cx0, cy0 = max(0, int(x0 - mx)), max(0, int(y0 - my))
        cx1, cy1 = min(w, int(x1 + mx)), min(h, int(y1 + my))
        crop = np.ascontiguousarray(frame[cy0:cy1, cx0:cx1])
        faces = self._mesh.process(crop).multi_face_landmarks if crop.size else None
        if not faces:  # the mesh did not find the face in the box: its landmarks are unknown
            return np.full((68, 2), np.nan, dtype=np.float32)
        mesh = faces[0].landmark
        ch, cw = crop.shape[:2]
        return np.array([(mesh[i].x * cw + cx0, mesh[i].y * ch + cy0) for i in MESH_TO_68],
                        dtype=np.float32)
