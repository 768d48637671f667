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


class UnknownSymbol(InvalidInput):
    """A symbol that is not one of the listed instruments (alerts, charts). Orders raise the same code from SQL."""

    code = "unknown_symbol"


class SetupError(Exception):
    """The app can't start: wrong configuration or an unreachable dependency.

    The message is one line that says what is wrong and what to do; the CLI prints it without a traceback.
    """


class InvalidOrder(DomainError):
    code = "invalid_order"


class InsufficientBuyingPower(DomainError):
    code = "insufficient_buying_power"


class InsufficientPosition(DomainError):
    code = "insufficient_position"


class QuoteUnavailable(DomainError):
    code = "quote_unavailable"


class MarketClosed(DomainError):
    code = "market_closed"


class Conflict(DomainError):
    code = "conflict"


class EntitlementRequired(DomainError):
    """The user's plan doesn't include this, or its quota is used up; the message names the plan."""

    code = "entitlement_required"


# Codes raised by the SQL functions (HINT of a P0001 error) -> the DomainError that carries them.
_BY_CODE: dict[str, type[DomainError]] = {
    "not_found": NotFound,
    "invalid_order": InvalidOrder,
    "unknown_symbol": InvalidOrder,
    "invalid_quantity": InvalidOrder,
    "invalid_price": InvalidOrder,
    "order_not_open": InvalidOrder,
    "insufficient_buying_power": InsufficientBuyingPower,
    "insufficient_cash": InsufficientBuyingPower,
    "insufficient_position": InsufficientPosition,
    "quote_unavailable": QuoteUnavailable,
    "market_closed": MarketClosed,
    "invalid_amount": InvalidInput,
    "already_exists": Conflict,
}


def domain_error(code: str, message: str) -> DomainError:
    """The DomainError for a code raised in SQL; its `code` is the precise one (e.g. unknown_symbol)."""
    error = _BY_CODE.get(code, DomainError)(message)
    error.code = code
    return error
