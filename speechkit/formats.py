"""Per-input output files written beside the results (`--output-format srt,vtt,txt,tsv,json`).

Subtitle cues are laid out in `speechkit.subtitles`; the JSON file is openai-whisper's.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from speechkit.data import Result, Segment
from speechkit.errors import SpeechkitError
from speechkit.subtitles import MAX_LINE_CHARS, MAX_LINES, SubtitleOptions, cues

__all__ = ["FORMATS", "MAX_LINE_CHARS", "MAX_LINES", "SubtitleOptions", "cues", "parse_formats",
           "to_json", "to_srt", "to_tsv", "to_txt", "to_vtt", "write_formats"]

FORMATS = ("srt", "vtt", "txt", "tsv", "json")


def parse_formats(spec: str | None) -> tuple[str, ...]:
    """`srt,vtt` -> ("srt", "vtt"); `all` -> every format."""
    if not spec:
        return ()
    names = tuple(dict.fromkeys(s.strip().lower() for s in spec.split(",") if s.strip()))
    if "all" in names:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad:
        raise SpeechkitError(f"unknown --output-format {', '.join(bad)}; choose from "
                             f"{', '.join(FORMATS)} or all")
    return names


def _stamp(seconds: float, sep: str) -> str:
    ms = max(0, round(seconds * 1000))
    h, ms = divmod(ms, 3_600_000)
    m, ms = divmod(ms, 60_000)
    s, ms = divmod(ms, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(result: Result, subtitles: SubtitleOptions = SubtitleOptions()) -> str:
    return "\n".join(f"{i}\n{_stamp(s, ',')} --> {_stamp(e, ',')}\n{text}\n"
                     for i, (s, e, text) in enumerate(cues(result, subtitles), 1))


def to_vtt(result: Result, subtitles: SubtitleOptions = SubtitleOptions()) -> str:
    return "WEBVTT\n\n" + "\n".join(f"{_stamp(s, '.')} --> {_stamp(e, '.')}\n{text}\n"
                                    for s, e, text in cues(result, subtitles))


def to_txt(result: Result) -> str:
    return result.text.strip() + "\n"


def to_tsv(result: Result) -> str:
    """openai-whisper's TSV: start and end in integer milliseconds, then the text."""
    rows = ["start\tend\ttext"]
    rows += [f"{round(s.start * 1000)}\t{round(s.end * 1000)}\t{s.text.strip().replace(chr(9), ' ')}"
             for s in result.segments if s.text.strip()]
    return "\n".join(rows) + "\n"


def _json_segment(i: int, s: Segment) -> dict:
    seg: dict = {"id": i, "start": s.start, "end": s.end, "text": s.text}
    if s.words is not None:  # openai-whisper writes them with --word_timestamps
        seg["words"] = [{"word": w.word, "start": w.start, "end": w.end,
                         "probability": w.probability} for w in s.words]
    return seg


def to_json(result: Result) -> str:
    """openai-whisper's JSON layout (text, segments with their words, language) plus the
    result's id and path."""
    doc = {"text": result.text, "language": result.language, "id": result.id, "path": result.path,
           "segments": [_json_segment(i, s) for i, s in enumerate(result.segments)]}
    return json.dumps(doc, ensure_ascii=False, indent=2) + "\n"


SUBTITLES = ("srt", "vtt")  # the formats laid out by SubtitleOptions
RENDER = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "tsv": to_tsv, "json": to_json}


def output_stems(ids_and_paths: Iterable[tuple[str, str]]) -> dict[str, str]:
    """File stem per item id: the media file's name without its extension; where two items
    share that, the name with its extension (`long.mp3`, `long.m4a`); where they share that
    too (two folders' `intro.wav`, or segments of one file), plus a short hash of the id.
    Each result line lists the files written for it (`extras.outputs`)."""
    pairs = list(ids_and_paths)
    stems = {item_id: (Path(path).stem if path else "item") for item_id, path in pairs}
    full = {item_id: (Path(path).name if path else "item") for item_id, path in pairs}
    shared = Counter(stems.values())
    names = {item_id: stem if shared[stem] == 1 else full[item_id] for item_id, stem in stems.items()}
    count = Counter(names.values())
    return {item_id: name if count[name] == 1 else
            f"{name}.{hashlib.sha1(item_id.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
            for item_id, name in names.items()}


def write_formats(result: Result, formats: tuple[str, ...], out_dir: Path, stem: str,
                  subtitles: SubtitleOptions = SubtitleOptions()) -> list[Path]:
    written = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        text = RENDER[fmt](result, subtitles) if fmt in SUBTITLES else RENDER[fmt](result)
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        written.append(path)
    if written:  # the result line says which files are its own
        result.extras["outputs"] = [str(p) for p in written]
    return written
