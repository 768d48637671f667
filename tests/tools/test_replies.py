"""Rendering replies from tool results: exact numbers copied from the JSON, never through floats."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from tools.registry import ToolResult
from tools.replies import as_of, group, render_reply, usd


def test_money_gets_a_dollar_and_thousands_separators_and_nothing_else_changes() -> None:
    assert usd("1234567.50") == "$1,234,567.50"
    assert usd("-12.30") == "-$12.30"
    assert usd("12.30", signed=True) == "+$12.30"
    assert usd("0.00", signed=True) == "$0.00"
    assert usd("90000.123456789") == "$90,000.123456789"  # a price keeps every digit the tool gave
    assert usd("95000", "USDT") == "95,000 USDT"  # USDT is not USD
    assert usd(None) == "n/a"


@given(st.decimals(allow_nan=False, allow_infinity=False, places=8, min_value=-(10**12), max_value=10**12))
def test_grouping_is_exact(value: Decimal) -> None:
    text = format(value, "f")
    assert group(text).replace(",", "") == text


def test_times_are_utc() -> None:
    assert as_of("2026-11-25T20:30:05+01:00") == "as of 2026-11-25 19:30:05 UTC"


def test_errors_render_their_message() -> None:
    res = ToolResult("get_quote", {"symbol": "GME"}, {"ok": False, "error": "not_found", "message": "GME is unknown."})
    assert render_reply([res]) == "GME is unknown."


def test_a_quote_says_simulated_and_as_of() -> None:
    res = ToolResult(
        "get_quote",
        {"symbol": "BTC-USDT"},
        {"ok": True, "symbol": "BTC-USDT", "name": "Bitcoin / Tether", "price": "91234.5", "currency": "USDT",
         "as_of": "2026-11-25T19:30:05+00:00", "stale": False, "simulated_prices": True},
    )  # fmt: skip
    assert render_reply([res]) == (
        "BTC-USDT (Bitcoin / Tether): 91,234.5 USDT as of 2026-11-25 19:30:05 UTC (simulated prices)."
    )
