"""Help texts go through rich markup: a bracketed word such as `speechkit[ray]` must be
escaped or the help shows `speechkit`."""

import click
import typer.main
from rich.text import Text

from speechkit.cli import app
from tests.test_cli import speechkit


def _help_texts(command: click.Command, path: str = ""):
    yield path, command.help or ""
    for param in command.params:
        yield f"{path} {param.name}", getattr(param, "help", None) or ""
    for name, sub in getattr(command, "commands", {}).items():
        yield from _help_texts(sub, f"{path} {name}")


def test_every_help_text_shows_its_brackets():
    cli = typer.main.get_command(app)
    lost = [(where, text) for where, text in _help_texts(cli)
            if Text.from_markup(text).plain != text.replace("\\[", "[")]
    assert not lost, lost


def test_runner_help_names_the_ray_extra():
    r = speechkit("transcribe", "--help")
    assert "pip install 'speechkit[ray]'" in r.stdout
