"""Option callbacks shared by commands: values are checked and normalised while parsing, so a
bad one is a usage error before anything loads."""

from __future__ import annotations

from speechkit.languages import check_language


def language_option(value: str | None) -> str | None:
    """`--language`: Whisper's code for a code or name (`English` -> `en`)."""
    return check_language(value, "--language")


def target_language_option(value: str | None) -> str | None:
    """`--target-language`: Whisper's code for a code or name (`german` -> `de`)."""
    return check_language(value, "--target-language")
