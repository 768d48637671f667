"""Domain errors: a stable `code` and a message that is safe to show the user.

Each transport maps these once (an ephemeral Discord reply, a tool result, an HTTP status); anything else is a bug
and is logged with a reference instead of shown.
"""

from __future__ import annotations


class DomainError(Exception):
    code = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(DomainError):
    code = "not_found"


class InvalidInput(DomainError):
    code = "invalid_input"


class SetupError(Exception):
    """The app can't start: wrong configuration or an unreachable dependency.

    The message is one line that says what is wrong and what to do; the CLI prints it without a traceback.
    """
