"""run_planner on the real database: the same tool calls the model loop makes, replies rendered from their results."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest

from tools.catalog import dec, money
from tools.context import ToolContext
from tools.planner import run_planner
from tools.registry import ToolResult
from tools.replies import group

_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2} UTC")
# Money ($1,234.50) and quantities ("2 AAPL", "0.5 ETH-USD"): the numbers about the user's money.
_NUMBER = re.compile(r"(?<=\$)\d[\d,]*(?:\.\d+)?|\d[\d,]*(?:\.\d+)?(?= [A-Z]{2,5}(?:-USDT?)?\b)")


def assert_grounded(reply: str, results: list[ToolResult]) -> None:
    """Every amount and quantity in the reply is copied from a tool result of the same turn (DESIGN 6)."""
    corpus = json.dumps([r.result for r in results])
    for number in _NUMBER.findall(_TIME.sub("", reply)):
        bare = number.replace(",", "")
        assert bare in corpus, f"{number} in the reply is in no tool result: {reply}"


async def orders_of(ctx: ToolContext, status: str = "all") -> list[object]:
    return list(await ctx.desk.orders(ctx.user_id, status))


async def test_position_without_holding_says_so_with_the_real_quote(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "how is my AAPL position")
    assert [r.name for r in reply.results] == ["get_position"]
    assert "no AAPL position" in reply.text
    assert "$200" in reply.text and "UTC" in reply.text and "(simulated prices)" in reply.text
    assert_grounded(reply.text, reply.results)


async def test_buy_is_a_proposal_only_and_the_position_shows_the_real_numbers_after_confirm(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "buy 2 aapl")
    assert [r.name for r in reply.results] == ["propose_order"]
    assert len(ctx.proposals) == 1 and ctx.proposals[0].qty == Decimal(2)
    assert "press Confirm to place it" in reply.text
    assert await orders_of(ctx) == []  # nothing placed
    assert_grounded(reply.text, reply.results)

    await ctx.desk.confirm(ctx.user_id, ctx.proposals[0].id)
    view = await ctx.desk.portfolio(ctx.user_id)
    (held,) = [p for p in view.positions if p.symbol == "AAPL"]

    reply = await run_planner(ctx, "how is my aapl position")
    text = reply.text
    assert f"You hold {dec(held.qty)} AAPL at an average cost of ${group(dec(held.avg_cost) or '')}" in text
    assert f"market value ${group(money(held.market_value) or '')}" in text
    assert "average cost (fees included)" in text and "(simulated prices)" in text
    assert_grounded(text, reply.results)

    reply = await run_planner(ctx, "whats my portfolio worth")
    assert f"Equity ${group(money(view.equity) or '')}" in reply.text
    assert "Cost basis: average cost (fees included)" in reply.text
    assert_grounded(reply.text, reply.results)

    reply = await run_planner(ctx, "sell all my aapl")
    assert [r.name for r in reply.results] == ["get_position", "propose_order"]
    assert ctx.proposals[-1].side == "sell" and ctx.proposals[-1].qty == held.qty
    assert "press Confirm" in reply.text and "AAPL position" not in reply.text


async def test_pnl_names_the_period_and_the_cost_basis(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "p&l this week")
    assert reply.results[0].args == {"period": "week"}
    assert "P&L for the past 7 days" in reply.text and "Cost basis: average cost" in reply.text
    assert_grounded(reply.text, reply.results)


async def test_quote_of_a_crypto_pair_and_an_unlisted_symbol(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "price of btc")
    assert reply.text.startswith("BTC-USD (Bitcoin): $90,000 as of ") and "(simulated prices)" in reply.text
    reply = await run_planner(ctx, "price of GME")
    assert not reply.results[0].ok and "GME is not a symbol TradeDesk lists" in reply.text


async def test_alerts_create_list_and_delete_by_symbol(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "alert me if ETH drops 5%")
    assert reply.results[0].result["threshold"] == "2850"
    assert "ETH-USD falls below $2,850 (-5% from $3,000)" in reply.text

    reply = await run_planner(ctx, "tell me when btc hits 100k")  # above the quote: an "above" alert
    assert [r.name for r in reply.results] == ["get_quote", "create_alert"]
    assert reply.results[1].args["condition"] == "above"
    reply = await run_planner(ctx, "alert me when btc hits 80k")
    assert reply.results[1].args["condition"] == "below"

    reply = await run_planner(ctx, "show my alerts")
    assert "Your alerts (3)" in reply.text

    reply = await run_planner(ctx, "delete my btc alert")  # two of them: ask which
    assert reply.kind == "clarify" and "You have 2 BTC-USD alerts. Which one?" in reply.text
    assert len(await ctx.desk.alerts(ctx.user_id)) == 3

    reply = await run_planner(ctx, "delete my eth alert")
    assert [r.name for r in reply.results] == ["list_alerts", "delete_alert"]
    assert reply.text == "Deleted your alert: ETH-USD falls below $2,850 (-5% from $3,000), once."

    reply = await run_planner(ctx, "delete my eth alert")
    assert reply.text == "You have no ETH-USD alert."

    first = str((await ctx.desk.alerts(ctx.user_id))[0].id)
    reply = await run_planner(ctx, f"delete alert {first[:8]}")
    assert reply.results[-1].args == {"alert_id": first}

    reply = await run_planner(ctx, "delete all my alerts")
    assert await ctx.desk.alerts(ctx.user_id) == []


async def test_cancel_by_symbol_is_a_cancel_proposal(ctx: ToolContext) -> None:
    await run_planner(ctx, "buy 1 msft limit 100 gtc")
    await ctx.desk.confirm(ctx.user_id, ctx.proposals[-1].id)
    reply = await run_planner(ctx, "open orders")
    assert "buy 1 MSFT limit $100 (GTC, new)" in reply.text

    reply = await run_planner(ctx, "cancel my MSFT order")
    assert [r.name for r in reply.results] == ["list_orders", "cancel_order"]
    assert ctx.proposals[-1].action == "cancel"
    assert "press Confirm to cancel it" in reply.text
    assert len(await orders_of(ctx, "open")) == 1  # still open until confirmed

    reply = await run_planner(ctx, "cancel my tsla order")
    assert reply.text == "You have no TSLA open order."


async def test_plan_and_chart(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "what plan am I on")
    assert reply.text.startswith("You're on the free plan: up to 10 active alerts")
    reply = await run_planner(ctx, "chart of btc this week")
    assert [name for name, _ in ctx.attachments] == ["BTC-USD.png"]
    assert "BTC-USD over 1w" in reply.text


async def test_clarifying_questions_call_nothing(ctx: ToolContext) -> None:
    reply = await run_planner(ctx, "buy tsla")
    assert reply.kind == "clarify" and reply.results == [] and "how many TSLA" in reply.text
    assert ctx.proposals == []


@pytest.mark.parametrize(
    "text", ["", "buy 10 tsla " * 900, "🚀🚀🚀", "比特币价格", "hola, ¿cuál es el precio de bitcoin?"],
    ids=["empty", "10k", "emoji", "chinese", "spanish"],
)  # fmt: skip
async def test_bad_input_is_a_short_help_reply_and_no_tool_call(ctx: ToolContext, text: str) -> None:
    reply = await run_planner(ctx, text)
    assert reply.kind == "help" and reply.results == []
    assert 0 < len(reply.text) < 800
    assert ctx.proposals == [] and ctx.attachments == []
