"""Non-speech suites: clips where nobody speaks, to measure what a model writes over them.

`nonspeech-mini` needs nothing downloaded: silence, room tone, white and pink noise, a tone
and a chord are generated from fixed seeds (the same samples on every machine) into
`speechkit_home()/nonspeech-mini/v1`, and two pocketsphinx read-book sentences are joined
by long stretches of room tone, with those pauses recorded on the item (`meta["pauses"]`).
`nonspeech` reads a user's data: ESC-50 (`meta/esc50.csv` + `audio/`) or any folder of
non-speech audio (MUSAN's noise/ or music/ folders, a field recording library).

Clips without speech have an empty reference; the hallucination metrics
(speechkit.evaluation.metrics.hallucination) read them as such.
"""

from __future__ import annotations

import csv
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from speechkit.data import Item
from speechkit.errors import SpeechkitError
from speechkit.evaluation.suites import Built, Suite, register_builder
from speechkit.media.wav import write_wav
from speechkit.paths import speechkit_home

SAMPLE_RATE = 16000
CLIP_S = 10.0  # seconds of each generated clip: a third of a Whisper window
GENERATOR_VERSION = "v1"  # bump when a recipe changes: the cache folder is named after it
ROOM_TONE_DBFS = -55.0  # faint hiss: above speechkit's digital-silence skip (-60 dBFS)
NOISE_DBFS = -20.0
TONE_DBFS = -12.0
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac")


def _at_dbfs(x: np.ndarray, dbfs: float) -> np.ndarray:
    """`x` scaled to an RMS of `dbfs` dB below full scale."""
    rms = float(np.sqrt(np.mean(np.square(x)))) or 1.0
    return x * (10 ** (dbfs / 20) / rms)


def _white(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(n)


def _pink(n: int, seed: int) -> np.ndarray:
    """White noise shaped to a 1/f power spectrum in the frequency domain."""
    spectrum = np.fft.rfft(_white(n, seed))
    f = np.fft.rfftfreq(n, 1 / SAMPLE_RATE)
    spectrum[1:] /= np.sqrt(f[1:])
    spectrum[0] = 0
    return np.fft.irfft(spectrum, n)


def _chord(n: int) -> np.ndarray:
    """A sustained A-minor chord with a 3 Hz tremolo: music-like, no words."""
    t = np.arange(n) / SAMPLE_RATE
    notes = sum(np.sin(2 * np.pi * f * t) for f in (220.0, 261.63, 329.63))
    return notes * (0.75 + 0.25 * np.sin(2 * np.pi * 3.0 * t))


N = int(CLIP_S * SAMPLE_RATE)
# name -> (what it is, how it is made): seeds fixed so every machine builds the same samples.
GENERATED: dict[str, tuple[str, Callable[[], np.ndarray]]] = {
    "silence": ("digital silence", lambda: np.zeros(N)),
    "room-tone": ("white noise at -55 dBFS", lambda: _at_dbfs(_white(N, 1), ROOM_TONE_DBFS)),
    "white-noise": ("white noise at -20 dBFS", lambda: _at_dbfs(_white(N, 2), NOISE_DBFS)),
    "pink-noise": ("pink noise at -20 dBFS", lambda: _at_dbfs(_pink(N, 3), NOISE_DBFS)),
    "tone-440hz": ("a 440 Hz sine at -12 dBFS", lambda: _at_dbfs(
        np.sin(2 * np.pi * 440.0 * np.arange(N) / SAMPLE_RATE), TONE_DBFS)),
    "chord": ("a chord with tremolo at -12 dBFS", lambda: _at_dbfs(_chord(N), TONE_DBFS)),
}
# Speech with long pauses: (id, [(pause s before, pocketsphinx librivox clip)], pause s after).
PAUSED = (
    ("pauses-a", [(0.5, "sense_and_sensibility_01_austen_64kb-0880"),
                  (8.0, "sense_and_sensibility_01_austen_64kb-0930")], 6.0),
    ("pauses-b", [(7.0, "sense_and_sensibility_01_austen_64kb-0890")], 8.0),
)


def _read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) != (SAMPLE_RATE, 1, 2):
            raise SpeechkitError(f"{path}: expected 16 kHz 16-bit mono (pocketsphinx-testdata)")
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float64) / 32768


def cache_dir() -> Path:
    """Where the generated clips are kept."""
    return speechkit_home() / "nonspeech-mini" / GENERATOR_VERSION


def _paused_item(name: str, parts: list[tuple[float, str]], tail_s: float,
                 speech_dir: Path, refs: dict[str, str], out: Path) -> Item:
    room = _at_dbfs(_white(int(60 * SAMPLE_RATE), 4), ROOM_TONE_DBFS)
    audio, pauses, words, t = [], [], [], 0.0
    for gap, clip in [*parts, (tail_s, None)]:
        audio.append(room[:int(gap * SAMPLE_RATE)])
        pauses.append([round(t, 3), round(t + gap, 3)])
        t += gap
        if clip is not None:
            speech = _read_wav(speech_dir / f"{clip}.wav")
            audio.append(speech)
            words.append(refs[clip])
            t += len(speech) / SAMPLE_RATE
    path = out / f"{name}.wav"
    if not path.is_file():
        write_wav(path, np.concatenate(audio))
    return Item(id=name, path=str(path), reference=" ".join(words), language="en",
                meta={"kind": "speech with long pauses", "pauses": pauses})


@register_builder("nonspeech-mini")
def nonspeech_mini(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """Generated non-speech clips plus pocketsphinx speech with long pauses."""
    from speechkit.evaluation.suite_builders import librivox_mini

    out = cache_dir()
    out.mkdir(parents=True, exist_ok=True)
    items = []
    for name, (what, make) in GENERATED.items():
        path = out / f"{name}.wav"
        if not path.is_file():
            write_wav(path, make())
        items.append(Item(id=name, path=str(path), reference="", language="en",
                          meta={"kind": what}))
    if opts.get("speech", True):
        speech, missing, _ = librivox_mini(suite, root, split, {"subsets": ["librivox"]})
        refs = {Path(it.path).stem: it.reference or "" for it in speech}
        if missing:
            return items, missing, {}
        speech_dir = Path(speech[0].path).parent
        items += [_paused_item(name, parts, tail, speech_dir, refs, out)
                  for name, parts, tail in PAUSED]
    return items, [], {}


def _esc50(root: Path) -> tuple[list[Item], list[str]]:
    items, missing = [], []
    with open(root / "meta" / "esc50.csv", encoding="utf-8", newline="") as fh:
        for row in csv.DictReader(fh):
            path = root / "audio" / row["filename"]
            if not path.is_file():
                missing.append(str(path))
                continue
            items.append(Item(id=Path(row["filename"]).stem, path=str(path), reference="",
                              meta={"kind": row.get("category"), "fold": row.get("fold")}))
    return items, missing


@register_builder("nonspeech")
def nonspeech(suite: Suite, root: Path, split: str, opts: dict[str, Any]) -> Built:
    """ESC-50 (meta/esc50.csv and audio/) or every audio file under a folder."""
    if opts.get("layout") == "esc50":
        if not (root / "meta" / "esc50.csv").is_file():
            raise SpeechkitError(f"{suite.name}/{split}: no meta/esc50.csv in {root}; for any "
                                 f"folder of non-speech audio pass --split folder. Expected "
                                 f"layout: {suite.layout}")
        items, missing = _esc50(root)
        return items, missing, {}
    items = [Item(id=p.relative_to(root).as_posix(), path=str(p), reference="",
                  meta={"kind": p.parent.name})
             for p in sorted(root.rglob("*")) if p.suffix.lower() in AUDIO_EXTENSIONS
             and p.is_file() and not p.name.startswith(".")]
    return items, [], {}
