"""The clip sets the speed benchmarks measure: every real or generated set this project can obtain.

A speed figure measured on one set of clips is a property of that set (its clip lengths, how
often a window falls back to sampling), not of the tool; `benchmarks/transcribe.py --sets`
prints a row per set. Each set is a list of {"path", "reference"} records:

- `librivox`: Debian's pocketsphinx-testdata LibriVox sentences (5 clips, 5-10 s, read speech).
- `cards`: the same package's card-game commands (5 clips, 1-4 s, one speaker, a small vocabulary).
- `espeak`: the Harvard sentences (IEEE 1969 lists 1 and 2, public domain) spoken by eSpeak NG at
  three speeds (20 clips, 2-4 s); synthetic, so the easiest set for recognition.
- `dev`: the development recordings (`SPEECHKIT_DEV_SET` or the folder beside the project),
  English ASR items only, when present.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEV = Path(os.environ.get("SPEECHKIT_DEV_SET") or ROOT.parent / "shared" / "data" / "dev")

HARVARD = (  # IEEE Recommended Practice for Speech Quality Measurements (1969), lists 1 and 2
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It's easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
    "The box was thrown beside the parked truck.",
    "The hogs were fed chopped corn and garbage.",
    "Four hours of steady work faced us.",
    "A large size in stockings is hard to sell.",
    "The boy was there when the sun rose.",
    "A rod is used to catch pink salmon.",
    "The source of the huge river is the clear spring.",
    "Kick the ball straight and follow through.",
    "Help the woman get back to her feet.",
    "A pot of tea helps to pass the evening.",
    "Smoky fires lack flame and heat.",
    "The soft cushion broke the man's fall.",
    "The salt breeze came across from the sea.",
    "The girl at the booth sold fifty bonds.",
)
ESPEAK_SPEEDS = (140, 175, 210)  # words per minute: slow, eSpeak's default, fast


def _pocketsphinx(sub: str, transcription: str) -> list[dict]:
    sys.path.insert(0, str(ROOT / "tests"))
    from conftest import pocketsphinx_dir

    ps = pocketsphinx_dir()
    if ps is None:
        return []
    items = []
    for line in (ps / sub / transcription).read_text().splitlines():
        if m := re.match(r"<s>(.*)</s>\s*\((.*)\)", line.strip()):
            items.append({"path": str(ps / sub / f"{Path(m.group(2)).name}.wav"),
                          "reference": " ".join(m.group(1).split())})
    return items


def librivox(folder: Path) -> list[dict]:
    return _pocketsphinx("librivox", "transcription")


def cards(folder: Path) -> list[dict]:
    return _pocketsphinx("cards", "cards.transcription")


def espeak(folder: Path) -> list[dict]:
    """The Harvard sentences at each speed, written as WAV files into `folder`."""
    sys.path.insert(0, str(ROOT))
    from tests.synth import Utterance, write_speech

    items = []
    for i, text in enumerate(HARVARD):
        wpm = ESPEAK_SPEEDS[i % len(ESPEAK_SPEEDS)]
        path = write_speech(folder / f"harvard{i:02d}.wav", Utterance(text, "en-us", wpm, "en"))
        items.append({"path": str(path), "reference": text})
    return items


def dev(folder: Path) -> list[dict]:
    manifest = DEV / "manifest.jsonl"
    if not manifest.is_file():
        return []
    items = []
    for line in manifest.read_text().splitlines():
        rec = json.loads(line)
        if rec.get("task") == "asr" and rec.get("language") == "en":
            items.append({"path": str(DEV / rec["path"]), "reference": rec["reference"]})
    return items


SETS: dict[str, Callable[[Path], list[dict]]] = {
    "librivox": librivox, "cards": cards, "espeak": espeak, "dev": dev}


def clip_sets(names: list[str], folder: Path) -> dict[str, list[dict]]:
    """The named sets that can be had here (an absent one, like `dev` on a fresh clone, is left
    out with a note on stderr); generated audio goes into `folder`."""
    out = {}
    for name in names:
        if name not in SETS:
            raise SystemExit(f"unknown clip set {name!r}; choose from {', '.join(SETS)}")
        (folder / name).mkdir(parents=True, exist_ok=True)
        if items := SETS[name](folder / name):
            out[name] = items
        else:
            print(f"clip set {name}: not available here, skipped", file=sys.stderr)
    return out
