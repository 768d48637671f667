"""The grounding guard on its own: which numbers a reply may state, given the turn's tool results."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from hypothesis import given
from hypothesis import strategies as st

from tools.grounding import about_money, check_reply, numbers_in, plain_rendering

RESULT = {
    "ok": True,
    "portfolio": "Main",
    "cash": "97999.80",
    "equity": "100099.80",
    "unrealized_pnl": "-20.00",
    "positions": [{"symbol": "AAPL", "qty": "10", "avg_cost": "200.02", "last_price": "210.456"}],
    "as_of": "2026-11-25T14:05:09+00:00",
}


def test_numbers_as_people_write_them() -> None:
    assert numbers_in("$100,099.80, -20, +3.5% and 1,234") == [
        Decimal("100099.80"), Decimal("-20"), Decimal("3.5"), Decimal("1234"),
    ]  # fmt: skip
    assert numbers_in("BTC-USD and ETH2") == []  # part of a word is not a number


def test_a_reply_with_the_tools_numbers_rounded_or_unsigned_is_grounded() -> None:
    reply = (
        "Your equity is $100,099.80 with $97,999.80 cash. You hold 10 AAPL at an average cost of $200.02; it last "
        "traded at 210.46 (about 210) as of 14:05 UTC, an unrealized loss of $20. 1 position."
    )
    assert check_reply(reply, [RESULT]).ok


def test_an_invented_number_is_caught() -> None:
    verdict = check_reply("Your equity is $100,099.80 and you made $512.33 today.", [RESULT])
    assert not verdict.ok and verdict.ungrounded == ("$512.33",)
    assert not check_reply("AAPL is at 211.46.", [RESULT]).ok  # close is not equal
    assert not check_reply("Your equity is $100,100.80", [RESULT]).ok


def test_numbers_the_user_wrote_may_be_repeated() -> None:
    assert check_reply("I've prepared a proposal to buy 25 TSLA.", [], user_text="buy 25 tsla").ok


def test_the_guard_applies_to_money_talk_or_money_tools() -> None:
    assert about_money("Your portfolio is worth $5", money_tools_called=False)
    assert about_money("Done.", money_tools_called=True)
    assert not about_money("I set that alert for you.", money_tools_called=False)


def test_the_plain_rendering_shows_results_exactly() -> None:
    text = plain_rendering([RESULT])
    assert "100099.80" in text and '"ok"' not in text
    assert check_reply(text, [RESULT]).ok


@given(
    value=st.decimals(min_value=Decimal("-1e9"), max_value=Decimal("1e9"), places=4, allow_nan=False),
    places=st.integers(min_value=0, max_value=4),
    grouped=st.booleans(),
)
def test_any_tool_number_said_at_any_precision_is_grounded(value: Decimal, places: int, grouped: bool) -> None:
    said = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    text = f"{said:,.{places}f}" if grouped else f"{said:.{places}f}"
    assert check_reply(f"Your cash is ${text}.", [{"cash": str(value)}]).ok


@given(
    value=st.decimals(min_value=Decimal(1), max_value=Decimal("1e6"), places=2, allow_nan=False),
    offset=st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2, allow_nan=False),
)
def test_any_number_off_by_a_cent_or_more_is_caught(value: Decimal, offset: Decimal) -> None:
    said = value + offset
    assert not check_reply(f"Your cash is ${said:.2f}.", [{"cash": str(value)}]).ok
