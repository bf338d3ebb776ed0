"""Cheap checks that run before any model loads: a bad value costs seconds, not a model load."""

from __future__ import annotations

from collections.abc import Sequence

from speechkit.data import Item
from speechkit.errors import SpeechkitError
from speechkit.tasks import WHISPER_TASKS


def check_inputs(items: Sequence[Item]) -> None:
    """Something can run. A missing input among others is not an error here: it gets its own
    error line and the rest still run."""
    if not items:
        raise SpeechkitError("the inputs hold no items: pass media files, folders, glob patterns "
                             "or a JSONL manifest with lines")
    if all(it.error for it in items):
        more = f" (and {len(items) - 1} more input(s) like it)" if len(items) > 1 else ""
        raise SpeechkitError(f"nothing to run: {items[0].error}{more}")


def check_task(model: str, task: str) -> None:
    """A task the model cannot do, where the model's name says what it is (Whisper)."""
    from speechkit.models.registry import names_whisper

    if task not in WHISPER_TASKS and names_whisper(model):
        raise SpeechkitError(f"{model} is a Whisper model: it does --task transcribe or translate, "
                             f"not {task!r}; use a speech-LLM checkpoint (--model DIR) for other tasks")
