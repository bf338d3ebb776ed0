"""Speech made at test time with eSpeak NG, for languages the fetched recordings lack.

The espeakng-loader wheel ships libespeak-ng and its voice data; this drives the library's
C API (speak_lib.h) through ctypes and writes 16-bit mono WAV files.
"""

from __future__ import annotations

import ctypes
import threading
import wave
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

AUDIO_OUTPUT_SYNCHRONOUS = 2  # speak_lib.h: synthesize into the callback, return when done
ESPEAK_CHARS_UTF8 = 1  # speak_lib.h: the text is UTF-8
ESPEAK_RATE = 1  # speak_lib.h espeak_PARAMETER: words per minute (default 175)


@dataclass(frozen=True)
class Utterance:
    text: str
    voice: str  # an eSpeak NG voice, "+variant" optional
    words_per_minute: int
    language: str  # what Whisper should detect


# Checked with whisper-base: each is detected as its language, and the German one is translated
# without a fallback. The default French voice was heard as Thai or Japanese at 120-175 wpm, its
# male variant m1 at 140 wpm is French; the German voice at 175 wpm drew no-speech windows.
GERMAN = Utterance("Guten Tag, meine Damen und Herren. Ich möchte Ihnen heute etwas über die Stadt "
                   "Berlin erzählen.", "de", 140, "de")
FRENCH = Utterance("Bonjour à tous. Aujourd'hui, nous allons parler de la ville de Paris, de ses "
                   "rues, de ses musées et de ses habitants.", "fr+m1", 140, "fr")

_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                   ctypes.c_void_p)
_lock = threading.Lock()  # the library keeps one voice and one callback for the process
_chunks: list[np.ndarray] = []


def _collect(samples, n: int, _events) -> int:
    if n > 0:
        _chunks.append(np.ctypeslib.as_array(samples, shape=(n,)).copy())
    return 0  # 0: go on synthesizing


_callback = _SYNTH_CALLBACK(_collect)  # kept alive: the library holds a pointer to it


@cache
def _engine() -> tuple[ctypes.CDLL, int]:
    """The loaded library and its output sample rate (22050 Hz for the bundled voices)."""
    import espeakng_loader

    lib = ctypes.CDLL(espeakng_loader.get_library_path())
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0,
                                 espeakng_loader.get_data_path().encode(), 0)
    if rate <= 0:
        raise RuntimeError(f"espeak_Initialize failed ({rate})")
    lib.espeak_SetSynthCallback(_callback)
    return lib, rate


def synthesize(text: str, voice: str, words_per_minute: int = 175) -> tuple[np.ndarray, int]:
    """`text` spoken by the eSpeak NG voice `voice` ("de", "fr+m1", "en-us"): int16 samples, rate."""
    lib, rate = _engine()
    data = text.encode()
    with _lock:
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"eSpeak NG has no voice {voice!r}")
        lib.espeak_SetParameter(ESPEAK_RATE, words_per_minute, 0)
        _chunks.clear()
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, ESPEAK_CHARS_UTF8, None, None)
        lib.espeak_Synchronize()
        samples = np.concatenate(_chunks) if _chunks else np.zeros(0, np.int16)
        _chunks.clear()
    return samples.astype(np.int16), rate


def write_speech(path: Path, utterance: Utterance) -> Path:
    """Speak `utterance` into a 16-bit mono WAV file at `path`."""
    samples, rate = synthesize(utterance.text, utterance.voice, utterance.words_per_minute)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path
