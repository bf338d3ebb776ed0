"""Per-input output files written beside the results (`--output-format srt,vtt,txt,tsv,json`).

Subtitle cues follow Whisper's segment timestamps; a segment too long for one cue is cut at
word boundaries into cues of at most MAX_LINES lines of MAX_LINE_CHARS characters, its time
shared out in proportion to the characters (or by word times when they were decoded).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from speechkit.data import Result, Segment
from speechkit.errors import SpeechkitError

FORMATS = ("srt", "vtt", "txt", "tsv", "json")
MAX_LINE_CHARS = 42  # characters per subtitle line (the common broadcast guideline)
MAX_LINES = 2  # lines per subtitle cue


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


def cues(result: Result, width: int = MAX_LINE_CHARS, max_lines: int = MAX_LINES
         ) -> list[tuple[float, float, str]]:
    """(start, end, text with line breaks) for each subtitle cue of a result."""
    out: list[tuple[float, float, str]] = []
    for seg in result.segments:
        if seg.words:
            timed = [(w.word, w.start, w.end) for w in seg.words if w.word.strip()]
        else:
            timed = [(w, None, None) for w in seg.text.split()]
        out.extend(_segment_cues(seg.start, seg.end, timed, width, max_lines))
    return out


def _segment_cues(start: float, end: float, words: list[tuple[str, float | None, float | None]],
                  width: int, max_lines: int) -> list[tuple[float, float, str]]:
    """One segment's cues: lines filled word by word; times from the words where known,
    else shared out in proportion to the characters."""
    lines: list[list[tuple[str, float | None, float | None]]] = []
    for w in words:
        if lines and len(" ".join(x[0] for x in lines[-1])) + 1 + len(w[0]) <= width:
            lines[-1].append(w)
        else:
            lines.append([w])
    groups = [sum(lines[i:i + max_lines], []) for i in range(0, len(lines), max_lines)]
    texts = ["\n".join(" ".join(x[0] for x in line) for line in lines[i:i + max_lines])
             for i in range(0, len(lines), max_lines)]
    total = sum(len(t) for t in texts) or 1
    out, t0 = [], start
    for k, (group, text) in enumerate(zip(groups, texts, strict=True)):
        last = k == len(groups) - 1
        if group[0][1] is not None:  # word times
            s, e = max(t0, group[0][1]), end if last else group[-1][2]
        else:
            s, e = t0, end if last else min(end, t0 + (end - start) * len(text) / total)
        out.append((round(s, 3), round(max(e, s), 3), text))
        t0 = max(e, s)
    return out


def to_srt(result: Result) -> str:
    return "\n".join(f"{i}\n{_stamp(s, ',')} --> {_stamp(e, ',')}\n{text}\n"
                     for i, (s, e, text) in enumerate(cues(result), 1))


def to_vtt(result: Result) -> str:
    return "WEBVTT\n\n" + "\n".join(f"{_stamp(s, '.')} --> {_stamp(e, '.')}\n{text}\n"
                                    for s, e, text in cues(result))


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


RENDER = {"srt": to_srt, "vtt": to_vtt, "txt": to_txt, "tsv": to_tsv, "json": to_json}


def output_stems(ids_and_paths: Iterable[tuple[str, str]]) -> dict[str, str]:
    """File stem per item id: the media file's name, plus a short hash of the id only where
    two items share a name (two folders' `intro.wav`, or segments of one file)."""
    pairs = list(ids_and_paths)
    names = {item_id: (Path(path).stem if path else "item") for item_id, path in pairs}
    count = Counter(names.values())
    return {item_id: name if count[name] == 1 else
            f"{name}.{hashlib.sha1(item_id.encode('utf-8', 'surrogateescape')).hexdigest()[:8]}"
            for item_id, name in names.items()}


def write_formats(result: Result, formats: tuple[str, ...], out_dir: Path, stem: str) -> list[Path]:
    written = []
    for fmt in formats:
        path = Path(out_dir) / f"{stem}.{fmt}"
        path.write_text(RENDER[fmt](result), encoding="utf-8", errors="surrogateescape")
        written.append(path)
    return written
