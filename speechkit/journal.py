"""Finished pieces of long files, kept until their file's result line is written.

A long recording is cut into pieces that are decoded in batches beside other files' pieces,
and its result line is written only when its last piece is done. So that an interruption
(Ctrl-C, kill -9, power loss) loses at most the batch in flight, each finished piece of a
file cut into several is appended to `.NAME.pieces` beside the results file (under the
results file's lock), flushed and synced once a batch. A rerun takes back the pieces made
from the same input by the same model with the same settings and decodes only the others:
batched output equals one-at-a-time output, so the result equals an uninterrupted run's.
When the run ends, the pieces of ids that have their result line are dropped, and the file
is removed once none are left.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

from speechkit.data import Item, Segment, dumps_line, parse_json_line
from speechkit.models.base import Hypothesis
from speechkit.staging import replace_file

SPAN_DECIMALS = 3  # spans are matched to the millisecond (the voice activity detector's cuts)


def journal_path(results: Path) -> Path:
    return results.with_name(f".{results.name}.pieces")


def piece_key(item: Item, model: dict[str, Any] | None, decode: dict[str, Any] | None) -> str:
    """What a piece's text depends on: the input (file, cut, stream, language, prompt), the
    model's identity and the decode settings. Batch size and threads are left out: they do
    not change the text."""
    record = {"model": model, "decode": decode, "path": item.path, "offset_s": item.offset_s,
              "duration_s": item.duration_s, "stream": item.meta.get("audio_stream"),
              "language": item.language, "prompt": item.prompt, "task": item.task,
              "target_language": item.target_language}
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _span(span: tuple[float, float]) -> tuple[float, float]:
    return round(span[0], SPAN_DECIMALS), round(span[1], SPAN_DECIMALS)


class PieceJournal:
    """The pieces file of one results file; used only while that file's lock is held."""

    def __init__(self, results: Path):
        self.path = journal_path(results)
        self._found: dict[tuple[str, str], dict[tuple[float, float], tuple[Hypothesis, str | None]]] = {}
        self._lines: list[tuple[str, bytes]] = []  # (id, raw line): what the file holds
        self._fh = None
        if self.path.is_file():
            self._read()

    def _read(self) -> None:
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):  # a torn last line (a killed run): cut it off,
            data = data[:data.rfind(b"\n") + 1]  # so that the next line starts on its own
            os.truncate(self.path, len(data))
        for raw in data.splitlines(keepends=True):
            d, _ = parse_json_line(raw)
            try:
                key = (d["id"], d["key"])
                hyp = _hypothesis(d["hyp"])
                span = _span(tuple(d["span"]))
            except (ValueError, KeyError, TypeError, AttributeError):
                continue  # a damaged line (or none): that piece is decoded again
            self._found.setdefault(key, {})[span] = (hyp, d.get("detected"))
            self._lines.append((d["id"], raw))

    def restore(self, item_id: str, key: str,
                spans: list[tuple[float, float]]) -> tuple[dict[int, Hypothesis], str | None]:
        """The pieces of this item found from an earlier run (by index into `spans`) and the
        language detected for it then."""
        found = self._found.get((item_id, key), {})
        out, detected = {}, None
        for k, span in enumerate(spans):
            if (hit := found.get(_span(span))) is not None:
                out[k] = hit[0]
                detected = detected or hit[1]
        return out, detected

    def add(self, item_id: str, key: str, span: tuple[float, float], hyp: Hypothesis,
            detected: str | None) -> None:
        try:
            line = dumps_line({"id": item_id, "key": key, "span": list(_span(span)),
                               "detected": detected, "hyp": asdict(hyp)}).encode("utf-8")
        except ValueError:  # a figure JSON cannot hold (NaN): this piece is decoded again
            return
        if self._fh is None:
            self._fh = open(self.path, "ab")
        self._fh.write(line)
        self._lines.append((item_id, line))

    def sync(self) -> None:
        """Make the pieces added so far survive a crash or a power loss (once a batch)."""
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def close(self, finished: set[str]) -> None:
        """Drop the pieces of ids whose result line is written; remove the file when empty."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
        keep = [raw for item_id, raw in self._lines if item_id not in finished]
        if len(keep) == len(self._lines) and self.path.exists() == bool(keep):
            return
        if keep:
            replace_file(self.path, keep)
        else:
            self.path.unlink(missing_ok=True)


def _hypothesis(d: dict[str, Any]) -> Hypothesis:
    segments = [Segment(**s) for s in d.get("segments") or []]
    return Hypothesis(text=d["text"], language=d.get("language"), segments=segments,
                      extras=dict(d.get("extras") or {}), error=None)
