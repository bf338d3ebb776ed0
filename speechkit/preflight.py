"""Cheap checks that run before any model loads: a bad value costs seconds, not a model load."""

from __future__ import annotations

from collections.abc import Sequence

from speechkit.data import Item
from speechkit.errors import SpeechkitError


def check_inputs(items: Sequence[Item]) -> None:
    """Something can run. A missing input among others is not an error here: it gets its own
    error line and the rest still run."""
    if not items:
        raise SpeechkitError("the inputs hold no items: pass media files, folders, glob patterns "
                             "or a JSONL manifest with lines")
    if all(it.error for it in items):
        more = f" (and {len(items) - 1} more input(s) like it)" if len(items) > 1 else ""
        raise SpeechkitError(f"nothing to run: {items[0].error}{more}")
