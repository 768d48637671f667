"""Decimal rules for money and quantities: one context, parsing user text without float, rounding points.

Quantities and prices are NUMERIC(28,10) and money NUMERIC(28,4) in the database; arithmetic happens in a context
precise enough that qty x price never rounds, and rounding happens only where the books say: fills to the
instrument's tick (in SQL) and cash to the cent.
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation, localcontext

CONTEXT = Context(prec=60, rounding=ROUND_HALF_EVEN)
CENT = Decimal("0.01")
_MAX_INTEGER_DIGITS = 18
_MAX_SCALE = 10


def parse_decimal(text: str | int | Decimal, what: str = "number") -> Decimal:
    """Parse a quantity or price typed by a person or sent by a provider; never goes through float.

    Accepts "10", "0.015", "1,250.50", "1_000"; refuses NaN, infinities, exponents beyond our scale, and more than
    18 integer digits or 10 decimals. Raises ValueError with a message fit for the user.
    """
    if isinstance(text, bool):
        raise ValueError(f"The {what} must be a number.")
    if isinstance(text, int):
        value = Decimal(text)
    elif isinstance(text, Decimal):
        value = text
    else:
        cleaned = text.strip().replace(",", "").replace("_", "").removeprefix("$")
        try:
            value = Decimal(cleaned)
        except InvalidOperation:
            raise ValueError(f"The {what} must be a number, like 10 or 0.5 (got {text.strip()[:20]!r}).") from None
    if not value.is_finite():
        raise ValueError(f"The {what} must be a finite number.")
    _, digits, exponent = value.normalize(CONTEXT).as_tuple()
    assert isinstance(exponent, int)
    if -exponent > _MAX_SCALE:
        raise ValueError(f"The {what} can have at most {_MAX_SCALE} decimals.")
    if len(digits) + exponent > _MAX_INTEGER_DIGITS:
        raise ValueError(f"The {what} is too large.")
    return value


def parse_positive(text: str | int | Decimal, what: str = "number") -> Decimal:
    """parse_decimal for a quantity or price, which must also be greater than zero (ValueError otherwise)."""
    value = parse_decimal(text, what)
    if value <= 0:
        raise ValueError(f"The {what} must be greater than zero.")
    return value


def cents(amount: Decimal) -> Decimal:
    """Round money to the cent, half to even."""
    with localcontext(CONTEXT):
        return amount.quantize(CENT)


def mul(a: Decimal, b: Decimal) -> Decimal:
    """a x b without rounding (the context is wide enough for NUMERIC(28,10) operands)."""
    with localcontext(CONTEXT):
        return a * b
