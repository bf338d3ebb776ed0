"""Lip crops from video for visual and audio-visual speech recognition (auto_avsr protocol):
25 fps frames through ffmpeg, face landmarks (dlib or MediaPipe), smoothed, aligned to a mean
face, 96x96 mouth crops; models read the normalized center 88x88."""

try:
    import cv2  # noqa: F401  (alignment and cropping)
except ImportError:
    from speechkit.errors import SpeechkitError

    raise SpeechkitError("lip crops need OpenCV and dlib: pip install 'speechkit[lips]'") from None

from speechkit.media.lips.backends import BACKENDS, DEFAULT_BACKEND, LandmarkBackend, load_backend
from speechkit.media.lips.cache import LipCrops
from speechkit.media.lips.stream import LipStream, cached_crops, lip_stream

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "LandmarkBackend", "LipCrops", "LipStream",
           "cached_crops", "lip_stream", "load_backend"]
