"""`speechkit convert FAMILY`: turn a released checkpoint into a speechkit checkpoint directory.

Each family's command lives in its own module (`convert_<family>.py`), imported below so it
registers itself on `convert_app`."""

from __future__ import annotations

import typer

convert_app = typer.Typer(
    help="Convert a released speech-LLM checkpoint (state dict read with weights_only=True) "
         "into a speechkit checkpoint directory.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add `convert` and its family commands to the main app."""
    from speechkit.commands import convert_families  # noqa: F401  (registers the commands)

    app.add_typer(convert_app, name="convert")
