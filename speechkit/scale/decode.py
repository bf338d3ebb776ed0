"""Media decoding on the cluster: one CPU task per item, light enough to import without the
model libraries. Rows travel as plain columns: the item as its manifest line, decoded audio
as float32 bytes, a decode failure as its error line."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from speechkit.audio import SAMPLE_RATE
from speechkit.data import Item
from speechkit.errors import decode_failure
from speechkit.media.ffmpeg import decode_audio


def item_row(item: Item) -> dict[str, str]:
    return {"item": json.dumps(item.to_dict())}  # ASCII: a non-UTF-8 file name travels escaped


def decode_row(row: dict[str, Any], task: str) -> dict[str, Any]:
    """Decode one item's recordings: its audio, and a verification trial's enrollment
    recording. A failure travels as the item's error line; the model worker first checks
    whether the model can take the item at all (as the local runner does)."""
    item = Item.from_dict(json.loads(row["item"]))
    out = {"item": row["item"], "audio": b"", "enroll": b"", "error": ""}
    if item.error:
        return out
    try:
        audio = decode_audio(item.path, SAMPLE_RATE, stream=item.meta.get("audio_stream"),
                             offset_s=item.offset_s, duration_s=item.duration_s)
        out["audio"] = audio.astype(np.float32, copy=False).tobytes()
        if task == "sv" and item.enroll:  # only verification trials read the enrollment file
            out["enroll"] = decode_audio(item.enroll, SAMPLE_RATE).astype(np.float32).tobytes()
    except Exception as e:  # any failure is this item's error line, never the run's
        out["error"] = decode_failure(item.path, e, item.source)
    return out
