"""The one error type for user mistakes: its message names the problem and the fix."""


class SpeechkitError(Exception):
    """A user-facing error. The CLI prints it on one line and exits non-zero, no traceback."""

    exit_code = 2


class ItemError(SpeechkitError):
    """A problem with one input item: recorded in its result line, the batch goes on."""

    exit_code = 1
