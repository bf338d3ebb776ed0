"""The one error type for user mistakes: its message names the problem and the fix."""


class SpeechkitError(Exception):
    """A user-facing error. The CLI prints it on one line and exits non-zero, no traceback."""

    exit_code = 2


def first_line(e: BaseException, limit: int | None = None) -> str:
    """The first line of an exception's message (its type when it has none), for one-line
    error messages; at most `limit` characters."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0][:limit]


def decode_failure(path: str, e: Exception, source: str | None = None) -> str:
    """The error line of an item whose media could not be decoded: a SpeechkitError's own
    message, else what failed; led by the manifest line it came from ("list.jsonl:7")."""
    why = str(e) if isinstance(e, SpeechkitError) else f"{path}: could not decode ({type(e).__name__}: {e})"
    return f"{source}: {why}" if source else why


class ItemError(SpeechkitError):
    """A problem with one input item: recorded in its result line, the batch goes on."""

    exit_code = 1
