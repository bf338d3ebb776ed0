"""Printing user text safely: file names, arguments, model names and transcripts are shown as
typed, never read as rich markup (a file called `[bold]a.wav` or `a[/x].wav` must print, not
restyle the line or raise a MarkupError)."""

from __future__ import annotations

from rich.markup import escape
from rich.table import Table
from rich.text import Text


def safe(value: object) -> str:
    """`value` as text to put inside a rich markup string: its brackets print as they are."""
    return escape(str(value))


def plain(value: object, style: str = "") -> Text:
    """`value` as a Text (table cell, title, status line) that rich never parses as markup."""
    return Text(str(value), style=style)


class PlainTable(Table):
    """A rich Table whose title and text cells print as written, never as markup."""

    def __init__(self, *headers: str, title: str | None = None, **kwargs) -> None:
        super().__init__(*headers, title=None if title is None else plain(title), **kwargs)

    def add_row(self, *cells, **kwargs) -> None:
        super().add_row(*(plain(c) if isinstance(c, str) else c for c in cells), **kwargs)
