"""`speechkit convert FAMILY`: turn a released checkpoint into a speechkit checkpoint directory.

Each family's command lives in its own module (`convert_<family>.py`), imported below so it
registers itself on `convert_app`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import typer

from speechkit.errors import SpeechkitError, first_line

convert_app = typer.Typer(
    help="Convert a released speech-LLM checkpoint (state dict read with weights_only=True) "
         "into a speechkit checkpoint directory.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `convert` and its family commands to the main app."""
    from speechkit.commands import convert_families  # noqa: F401  (registers the commands)

    app.add_typer(convert_app, name="convert")


@contextlib.contextmanager
def shaped_like(family: str, ckpt: Path) -> Iterator[None]:
    """A checkpoint whose tensors have names the converter knows but not the shapes it
    expects (a scalar where a matrix belongs, ...) is one line naming it, not a traceback."""
    try:
        yield
    except (ValueError, KeyError, IndexError, RuntimeError, TypeError) as e:
        raise SpeechkitError(f"--ckpt {ckpt}: its tensors are not shaped like a released "
                             f"{family} checkpoint's ({type(e).__name__}: {first_line(e, 160)}); "
                             "pass the checkpoint as released, unmodified") from None
