"""Slash-command option text to exact values. Discord's number options are JSON doubles, so quantities and prices
arrive as strings and are parsed here to Decimal, refusing what can't be an amount with a message for the user."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from core.errors import InvalidInput, NotFound
from core.money import parse_decimal, parse_positive


def amount(text: str, what: str) -> Decimal:
    try:
        return parse_positive(text, what)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def optional_amount(text: str | None, what: str) -> Decimal | None:
    return None if text is None or not text.strip() else amount(text, what)


def signed_amount(text: str, what: str) -> Decimal:
    try:
        return parse_decimal(text.replace("%", ""), what)
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None


def object_id(text: str, what: str) -> UUID:
    """An order or alert id from autocomplete (the full id) — anything else is not one of the user's."""
    try:
        return UUID(text.strip())
    except ValueError:
        raise NotFound(f"You have no {what} with that id: pick one from the suggestions.") from None
