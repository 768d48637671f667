"""The request or interaction id of the work in progress, for the log: one contextvar, set by each transport.

The web app's middleware sets it per request (the caller's X-Request-Id when it is sane, else a new one) and the bot
per interaction (the Discord interaction id) or message. asyncio copies the context into every task started from
there, so each log line written on behalf of that request carries the id: `RequestIdFilter` puts it on the record
as `request_id` ("" when none), and the app's formatter appends `req=<id>`.
"""

from __future__ import annotations

import logging
import re
import secrets
from contextvars import ContextVar, Token

request_id: ContextVar[str | None] = ContextVar("tradedesk_request_id", default=None)

# What we accept from outside (a proxy's X-Request-Id): short, printable, no spaces or separators a log parser or a
# header would trip on. Anything else is replaced by one of ours.
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}")


def new_request_id() -> str:
    return secrets.token_hex(8)


def sane_request_id(candidate: str | None) -> str | None:
    """`candidate` if it is a usable id (1-100 characters of letters, digits and . _ : -), else None."""
    if candidate is not None and _SANE.fullmatch(candidate):
        return candidate
    return None


def set_request_id(value: str) -> Token[str | None]:
    """Make `value` the current id (for this task and the tasks it starts); `reset_request_id` undoes it."""
    return request_id.set(value)


def reset_request_id(token: Token[str | None]) -> None:
    request_id.reset(token)


def current_request_id() -> str | None:
    return request_id.get()


class RequestIdFilter(logging.Filter):
    """Puts the current request id on each record (`record.request_id`, "" when none); never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id.get() or ""
        return True
