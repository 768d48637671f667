"""Parsing user and provider numbers without float, and the half-even cent."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.money import cents, parse_decimal


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10", "10"),
        ("0.015", "0.015"),
        ("1,250.50", "1250.50"),
        (" $99.5 ", "99.5"),
        ("1_000", "1000"),
        ("2.50", "2.5"),
    ],
)
def test_parses_what_people_type(text: str, expected: str) -> None:
    assert parse_decimal(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ten", "must be a number"),
        ("NaN", "finite"),
        ("inf", "finite"),
        ("0.00000000001", "at most 10 decimals"),
        ("1e30", "too large"),
        ("", "must be a number"),
    ],
)
def test_refuses_what_it_cannot_use(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_decimal(text, "quantity")


def test_a_bool_is_not_a_number() -> None:
    with pytest.raises(ValueError):
        parse_decimal(True)  # type: ignore[arg-type]


@given(st.text(max_size=40))
def test_any_text_gives_a_decimal_or_a_clear_value_error(text: str) -> None:
    try:
        value = parse_decimal(text)
    except ValueError as exc:
        assert str(exc).startswith("The ")
    else:
        assert isinstance(value, Decimal) and value.is_finite()


@given(st.decimals(min_value=-(10**12), max_value=10**12, places=4, allow_nan=False, allow_infinity=False))
def test_cents_round_half_to_even(amount: Decimal) -> None:
    rounded = cents(amount)
    assert abs(rounded - amount) <= Decimal("0.005")
    if abs(amount * 100 - (amount * 100).to_integral_value(rounding="ROUND_DOWN")) == Decimal("0.5"):
        assert (rounded * 100) % 2 == 0
