"""Face-landmark backends behind one base class; `load_backend(name)` builds one."""

from __future__ import annotations

from speechkit.errors import SpeechkitError
from speechkit.media.lips.backends.base import Box, LandmarkBackend

BACKENDS = ("dlib", "mediapipe")  # the first is the default
DEFAULT_BACKEND = BACKENDS[0]

__all__ = ["BACKENDS", "DEFAULT_BACKEND", "Box", "LandmarkBackend", "load_backend"]


def load_backend(name: str) -> LandmarkBackend:
    """A ready backend by name; its library is imported only here."""
    if name == "dlib":
        from speechkit.media.lips.backends.dlib import DlibBackend

        return DlibBackend()
    if name == "mediapipe":
        from speechkit.media.lips.backends.mediapipe import MediapipeBackend

        return MediapipeBackend()
    raise SpeechkitError(f"unknown lip backend {name!r}; pass one of: {', '.join(BACKENDS)}")
