"""The one user-error type.

Anything the user can fix (a missing file, a malformed box, an engine built for another GPU) is raised as
`SRGError`; the CLI prints its message on one line and exits 1. Every other exception is a bug and keeps its
traceback.
"""

from __future__ import annotations


class SRGError(Exception):
    """A problem with the user's input or environment, with a message that says what to do about it."""


def first_line(error: BaseException) -> str:
    """The first non-blank line of a third-party error, for quoting it inside a one-line `SRGError`."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__
