"""The offline planner's parsing: the labelled set (accuracy >= 95%), exact core cases, and bad input of any kind."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.planner import load_cases, naive_describe, planner_describe, score
from tools.catalog import BY_NAME
from tools.planner import MAX_CHARS, PickIds, Plan, ToolCall, correct, edit_distance, plan

CASES = load_cases()


def test_the_labelled_set_is_large_and_varied() -> None:
    assert len(CASES) >= 150
    expected = [c.expect for c in CASES]
    tools = {step["tool"] for e in expected if isinstance(e, list) for step in e}
    assert tools == set(BY_NAME)  # every tool is exercised
    assert sum(1 for e in expected if e == "help") >= 15
    assert sum(1 for e in expected if e == "clarify") >= 10
    assert any(len(c.text) >= 10_000 for c in CASES)


def test_accuracy_on_the_labelled_set_is_at_least_95_percent() -> None:
    result = score(CASES, planner_describe)
    for miss in result.misses:
        print(f"miss: {miss['text']!r}: expected {miss['expected']}, got {miss['got']}")
    assert result.accuracy >= 0.95, f"{len(result.misses)} misses"
    assert result.accuracy > score(CASES, naive_describe).accuracy


CORE = [
    ("how is my aapl position", [{"tool": "get_position", "args": {"symbol": "AAPL"}}]),
    ("whats my portfolio worth", [{"tool": "get_portfolio", "args": {}}]),
    ("price of btc", [{"tool": "get_quote", "args": {"symbol": "BTC-USD"}}]),
    ("eth?", [{"tool": "get_quote", "args": {"symbol": "ETH-USD"}}]),
    ("price of btc usdt", [{"tool": "get_quote", "args": {"symbol": "BTC-USDT"}}]),
    ("what did I make this week", [{"tool": "get_pnl", "args": {"period": "week"}}]),
    ("p&l last month", [{"tool": "get_pnl", "args": {"period": "month"}}]),
    ("ytd pnl", [{"tool": "get_pnl", "args": {"period": "year"}}]),
    ("buy 10 tsla", [{"tool": "propose_order", "args": {"symbol": "TSLA", "side": "buy", "qty": "10"}}]),
    (
        "sell 0.5 eth at 3200",
        [
            {
                "tool": "propose_order",
                "args": {"symbol": "ETH-USD", "side": "sell", "qty": "0.5", "type": "limit", "limit_price": "3200"},
            }
        ],
    ),
    (
        "alert me if ETH drops 5%",
        [{"tool": "create_alert", "args": {"symbol": "ETH-USD", "condition": "move", "value": "-5"}}],
    ),
    (
        "tell me when apple goes above 250",
        [{"tool": "create_alert", "args": {"symbol": "AAPL", "condition": "above", "value": "250"}}],
    ),
    (
        "delete my AAPL alert",
        [{"tool": "list_alerts", "args": {}}, {"tool": "delete_alert", "pick": {"symbol": "AAPL"}}],
    ),
    ("show my alerts", [{"tool": "list_alerts", "args": {}}]),
    ("open orders", [{"tool": "list_orders", "args": {"status": "open"}}]),
    (
        "cancel my MSFT order",
        [{"tool": "list_orders", "args": {"status": "open"}}, {"tool": "cancel_order", "pick": {"symbol": "MSFT"}}],
    ),
    ("what plan am I on", [{"tool": "get_plan", "args": {}}]),
    ("chart of btc this week", [{"tool": "get_chart", "args": {"target": "BTC-USD", "period": "1w"}}]),
    ("portfolo", [{"tool": "get_portfolio", "args": {}}]),
    ("postion in nvda", [{"tool": "get_position", "args": {"symbol": "NVDA"}}]),
    ("buy tsla", "clarify"),
    ("", "help"),
    ("🚀🚀🚀", "help"),
    ("¿cuál es el precio de bitcoin?", "help"),
]


@pytest.mark.parametrize(("text", "expected"), CORE, ids=[t or "<empty>" for t, _ in CORE])
def test_core_utterances(text: str, expected: object) -> None:
    assert plan(text).describe() == expected


def test_tool_calls_are_validated_by_the_tools_own_models() -> None:
    with pytest.raises(ValueError, match="qty"):
        ToolCall("propose_order", {"symbol": "TSLA", "side": "buy", "qty": "-3"})
    with pytest.raises(ValueError):
        ToolCall("get_pnl", {"period": "fortnight"})


def test_typos_are_corrected_only_to_one_unambiguous_word() -> None:
    assert edit_distance("postion", "position") == 1
    assert edit_distance("protfolio", "portfolio") == 1  # a transposition counts once
    assert correct("portfolo") == "portfolio"
    assert correct("aler") == "alert"
    assert correct("appl") in ("aapl", "apple")  # both mean AAPL
    assert correct("sel") == "sel"  # trade verbs are never the target of a correction
    assert correct("bell") == "bell"
    assert correct("weather") == "weather"


def test_a_typo_in_a_trade_verb_asks_instead_of_trading() -> None:
    p = plan("sel 5 aapl")
    assert p.kind == "clarify" and "sell 5 AAPL" in (p.reply or "")


def test_several_symbols_to_delete_each_get_their_own_pick() -> None:
    p = plan("delete my btc and eth alerts")
    assert p.steps[1:] == (
        PickIds("delete_alert", "BTC-USD", every=True),
        PickIds("delete_alert", "ETH-USD", every=True),
    )


@pytest.mark.parametrize(
    "text",
    ["", " \n\t ", "x" * 10_000, "buy 10 tsla " * 1000, "🚀" * 5000, "😀🙏🔥", "比特币价格", "Привет, как дела?",
     "wie geht es meinem Portfolio", "مرحبا", "\x00\x01\x02", "!!!???", "ｂｕｙ"],
    ids=lambda t: repr(t[:12]),
)  # fmt: skip
def test_bad_input_gets_a_short_help_reply(text: str) -> None:
    p = plan(text)
    assert p.kind == "help" and p.steps == ()
    assert p.reply and len(p.reply) < 800


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_text_gives_a_plan_without_crashing(text: str) -> None:
    p = plan(text)
    assert isinstance(p, Plan)
    assert (p.kind == "tools") == bool(p.steps)
    assert p.kind == "tools" or (p.reply and len(p.reply) < 800)


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789 .,$%&?-/@<>", max_size=80))
def test_emitted_calls_are_always_valid(text: str) -> None:
    for step in plan(text).steps:
        if isinstance(step, ToolCall):
            BY_NAME[step.name].args.model_validate(step.args)


def test_over_the_limit_is_help_even_with_a_request_inside() -> None:
    assert plan("buy 1 aapl " + " " * 10 + "x" * MAX_CHARS).kind == "help"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("buy 1 tsla at 0", "The price must be greater than zero."),
        ("sell 0 aapl", "The quantity must be more than zero."),
        ("buy 1,2 eth", "write decimals with a point"),  # a decimal comma, or a typo for 12? don't guess
        ("buy 1.2.3 btc", "write decimals with a point"),
        ("buy 99999999999999999999999999999999999999999 aapl", "qty: String should have at most 40 characters"),
    ],
)
def test_values_that_would_not_make_a_valid_call_are_a_question(text: str, says: str) -> None:
    p = plan(text)
    assert p.kind == "clarify" and says in (p.reply or "")


def test_thousands_separators_and_suffixes_are_exact() -> None:
    (step,) = plan("sell 3,150.5 aapl at 1.5k").steps
    assert isinstance(step, ToolCall) and step.args["qty"] == "3150.5" and step.args["limit_price"] == "1500"


def test_capitals_name_an_unlisted_ticker_unless_the_whole_message_shouts() -> None:
    assert plan("price of GME").describe() == [{"tool": "get_quote", "args": {"symbol": "GME"}}]
    assert plan("price of gme").kind == "help"
    assert plan("SHOW ME MY STUFF").kind == "help"
    assert plan("WHAT IS MY PORTFOLIO WORTH").describe() == [{"tool": "get_portfolio", "args": {}}]
