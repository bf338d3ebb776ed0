"""Subtitle and text files written beside the JSONL (`--format srt,vtt,txt`)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from speechkit.data import Result
from speechkit.errors import SpeechkitError

FORMATS = ("srt", "vtt", "txt")


def parse_formats(spec: str | None) -> tuple[str, ...]:
    if not spec:
        return ()
    names = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise SpeechkitError(f"unknown --format {', '.join(bad)}; choose from {', '.join(FORMATS)}")
    return names


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(result: Result) -> str:
    blocks = [f"{i}\n{_stamp(s.start, ',')} --> {_stamp(s.end, ',')}\n{s.text.strip()}\n"
              for i, s in enumerate((s for s in result.segments if s.text.strip()), 1)]
    return "\n".join(blocks)


def to_vtt(result: Result) -> str:
    cues = [f"{_stamp(s.start, '.')} --> {_stamp(s.end, '.')}\n{s.text.strip()}\n"
            for s in result.segments if s.text.strip()]
    return "WEBVTT\n\n" + "\n".join(cues)


def to_txt(result: Result) -> str:
    return result.text.strip() + "\n"


RENDER = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt}


def output_stem(result: Result) -> str:
    """File stem for an item: its media name plus a short id hash, so equal names never collide."""
    name = Path(result.path).stem if result.path else "item"
    digest = hashlib.sha1(result.id.encode("utf-8", "surrogateescape")).hexdigest()[:8]
    return f"{name}.{digest}"


def write_formats(result: Result, formats: tuple[str, ...], out_dir: Path) -> list[Path]:
    written = []
    for fmt in formats:
        path = Path(out_dir) / f"{output_stem(result)}.{fmt}"
        path.write_text(RENDER[fmt](result), encoding="utf-8", errors="surrogateescape")
        written.append(path)
    return written
