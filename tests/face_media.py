"""Talking-face clips the suite makes itself: a real photograph of a face, moved a little at
25 fps by ffmpeg, with a real speech recording as its sound track.

The face is NASA's portrait of Eileen Collins (public domain), shipped in scikit-image's wheel
as `skimage/data/astronaut.png`; the speech is Debian's pocketsphinx LibriVox clips with their
transcripts (the `testdata` fixture). The picture drifts, zooms and turns a few degrees, so
face tracking, landmark smoothing and crop geometry see a moving head.

What these clips can test: face detection and tracking, crop counts and geometry, containers
(MPEG-PS with MP2 audio like GRID's .mpg; MP4 with AAC like LRS3's), the audio clock, caching,
and every path that carries lip crops to a model. What they cannot: the mouth never moves (it
is a photograph), so nothing about articulation, and a lip-reading score means nothing on them.
The development set's real GRID and TED clips (`make test-dev`) cover real moving mouths.
"""

from __future__ import annotations

import importlib.util
import re
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

FPS = 25


@dataclass(frozen=True)
class FaceRecipe:
    """How one clip is made: the recording it speaks, the part of the photograph it shows,
    the frame size and the codecs."""

    speech: str  # pocketsphinx librivox utterance id
    region: tuple[int, int, int, int]  # x, y, w, h in the 512x512 photograph (face at ~220,121)
    size: tuple[int, int]  # output width, height
    codecs: tuple[str, ...]


RECIPES = {
    # GRID-like: 360x288 MPEG-1 video, MP2 audio at 44.1 kHz stereo, MPEG program stream; 3 s.
    "grid": FaceRecipe("sense_and_sensibility_01_austen_64kb-0880", (20, 0, 400, 320), (360, 288),
                       ("-c:v", "mpeg1video", "-q:v", "4", "-c:a", "mp2", "-ar", "44100", "-ac", "2",
                        "-f", "mpeg")),
    # LRS3-like: a 224x224 face clip, MPEG-4 part 2 video, AAC at 16 kHz mono in MP4; 5.3 s.
    "ted": FaceRecipe("sense_and_sensibility_01_austen_64kb-0890", (100, 1, 240, 240), (224, 224),
                      ("-c:v", "mpeg4", "-q:v", "3", "-c:a", "aac", "-ar", "16000", "-ac", "1")),
}
SUFFIX = {"grid": ".mpg", "ted": ".mp4"}


@dataclass(frozen=True)
class FaceClip:
    """A made clip and what it says."""

    path: Path
    text: str  # the LibriVox transcript of its sound track (lowercase words)
    frames: int  # video frames at 25 fps: the speech's length, rounded


def face_photo() -> Path:
    """The astronaut photograph, found without importing scikit-image (a test dependency)."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise RuntimeError("scikit-image is not installed; the talking-face test clips are made "
                           "from its astronaut photograph: pip install -e '.[test]'")
    return Path(spec.origin).parent / "data" / "astronaut.png"


def librivox_transcripts(testdata: Path) -> dict[str, str]:
    """`<s> words </s> (utterance)` lines of pocketsphinx's librivox/transcription."""
    lines = (testdata / "librivox" / "transcription").read_text(encoding="utf-8").splitlines()
    found = (re.match(r"<s>(.*)</s>\s*\((.+)\)", ln.strip()) for ln in lines)
    return {m.group(2): " ".join(m.group(1).split()) for m in found if m}


def wav_seconds(path: Path) -> float:
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def motion(recipe: FaceRecipe) -> str:
    """The filter that moves the photograph: a turn of up to 3 degrees about its centre, then a
    window over `region` that zooms 1.0-1.2x and drifts up to 15 px (periods of 1.6-3 s, so a
    3 s clip sees each change direction)."""
    x, y, w, h = recipe.region
    out_w, out_h = recipe.size
    return (f"rotate=a='0.05*sin(2*PI*t/3)',crop={w}:{h}:{x}:{y},"
            "zoompan=z='1.1+0.1*sin(2*PI*on/50)'"
            ":x='iw/2-iw/zoom/2+15*sin(2*PI*on/60)':y='ih/2-ih/zoom/2+10*cos(2*PI*on/40)'"
            f":d=1:s={out_w}x{out_h}:fps={FPS},format=yuv420p")


def make_face_clip(make_media: Callable[..., Path], testdata: Path, name: str) -> FaceClip:
    """Make the clip of RECIPES[name] with the `make_media` fixture; the video lasts as long as
    the speech (to the nearest frame)."""
    recipe = RECIPES[name]
    speech = testdata / "librivox" / f"{recipe.speech}.wav"
    frames = round(wav_seconds(speech) * FPS)
    path = make_media(f"face_{name}{SUFFIX[name]}", "-loop", "1", "-framerate", str(FPS),
                      "-i", str(face_photo()), "-i", str(speech),
                      "-filter_complex", f"[0:v]{motion(recipe)}[v]", "-map", "[v]", "-map", "1:a",
                      "-frames:v", str(frames), *recipe.codecs)
    return FaceClip(path, librivox_transcripts(testdata)[recipe.speech], frames)
