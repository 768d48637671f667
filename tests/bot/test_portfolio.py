"""/portfolio, /positions, /pnl, /quote, /chart and /help through the fake Discord, as the user sees them."""

from __future__ import annotations

import struct
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from bench.fake_discord import option
from core.db.database import run_sql
from tests.bot.conftest import EPHEMERAL, Chat
from tests.bot.test_orders import buttons, click, propose


def field(embed: dict[str, Any], name: str) -> str:
    value: str = next(f["value"] for f in embed["fields"] if f["name"] == name)
    return value


async def buy(chat: Chat, symbol: str, qty: str, **kw: Any) -> None:
    data = await propose(chat, option("symbol", symbol), option("qty", qty), **kw)
    _, done = await click(chat, buttons(data)["Confirm"], **kw)
    assert done["embeds"][0]["title"] == "Order filled", done


async def test_portfolio_is_private_in_guilds_and_exact_to_the_cent(chat: Chat) -> None:
    await buy(chat, "AAPL", "10")  # 200.00 + 1 bp slippage = 200.02, no fee: 2,000.20
    await chat.set_price("AAPL", "210.00")
    record = await chat.send(chat.fake.payloads.slash_command("portfolio"))
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    embed = record.callback_data["embeds"][0]
    assert embed["title"] == "Portfolio — Main"
    assert field(embed, "Cash") == "$97,999.80"
    assert field(embed, "Positions value") == "$2,100.00"
    assert field(embed, "Equity") == "$100,099.80"
    assert field(embed, "Unrealized P&L") == "+$99.80"
    assert "average cost" in embed["footer"]["text"] and "simulated" in embed["footer"]["text"]
    assert "1 open position(s), prices as of <t:" in embed["description"]


async def test_in_dms_portfolio_replies_are_normal_messages(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("portfolio", guild=False))
    assert record.callback_type == 4 and not record.callback_flags & EPHEMERAL
    assert record.callback_data["embeds"][0]["title"] == "Portfolio — Main"


async def test_an_unknown_portfolio_name_is_a_private_error(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("portfolio", option("name", "Retirement")))
    assert (
        record.callback_flags & EPHEMERAL
        and record.callback_data["content"] == "You have no portfolio named Retirement."
    )


async def test_positions_show_quantity_average_cost_value_and_pnl(chat: Chat) -> None:
    await buy(chat, "AAPL", "10")
    await buy(chat, "ETH-USD", "0.5")
    await chat.set_price("ETH-USD", "3100.00")
    record = await chat.send(chat.fake.payloads.slash_command("positions"))
    assert record.callback_flags & EPHEMERAL
    lines = record.callback_data["embeds"][0]["description"].splitlines()
    assert lines[0].startswith("**AAPL** 10 @ avg 200.02 · last 200.00 · $2,000.00 · -$0.20")
    assert lines[1].startswith("**ETH-USD** 0.5 @ avg 3,000.30 · last 3,100.00 · $1,550.00 · +$49.85")


async def test_pnl_over_a_period_leaves_deposits_out(chat: Chat) -> None:
    await buy(chat, "AAPL", "10")
    user = await chat.user_id(chat.fake.payloads.default_user)
    # An equity snapshot a week ago, before the portfolio's price move: as the scheduler takes them.
    async with chat.db.system_scope("test.snapshot") as s:
        await run_sql(
            s,
            text("UPDATE portfolios SET created_at = :at WHERE user_id = :u"),
            {"at": chat.clock() - timedelta(days=9), "u": user},
        )
        await run_sql(  # the opening deposit, with the portfolio
            s,
            text("UPDATE cash_ledger SET created_at = :at WHERE user_id = :u AND kind <> 'trade'"),
            {"at": chat.clock() - timedelta(days=9), "u": user},
        )
        await run_sql(
            s,
            text(
                "INSERT INTO equity_snapshots (user_id, portfolio_id, ts, equity, cash, positions_value, realized_pnl,"
                " unrealized_pnl) SELECT user_id, id, :ts, 100000, 100000, 0, 0, 0 FROM portfolios WHERE user_id = :u"
            ),
            {"ts": chat.clock() - timedelta(days=8), "u": user},
        )
    await chat.set_price("AAPL", "220.00")
    record = await chat.send(chat.fake.payloads.slash_command("pnl", option("period", "week")))
    embed = record.callback_data["embeds"][0]
    assert record.callback_flags & EPHEMERAL
    assert embed["title"] == "P&L last week — Main"
    assert embed["description"].startswith("**+$199.80** since <t:")  # 10 x (220 - 200.02)
    record = await chat.send(chat.fake.payloads.slash_command("pnl", option("period", "all")))
    assert "**+$199.80** since the portfolio opened" in record.callback_data["embeds"][0]["description"]


async def test_quote_is_public_and_says_simulated(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("quote", option("symbol", "btc-usd")))
    assert record.callback_type == 4 and not record.callback_flags & EPHEMERAL  # a price is nobody's secret
    embed = record.callback_data["embeds"][0]
    assert embed["title"] == "BTC-USD — Bitcoin"
    assert embed["description"].startswith("**90,000.00 USD** as of <t:")
    assert embed["footer"]["text"] == "Prices are simulated (local sim feed), not real market data."


async def test_quote_of_an_unlisted_or_malformed_symbol_is_a_private_error(chat: Chat) -> None:
    for typed, message in (("NOPE", "is not a symbol TradeDesk lists"), ("a b", "is not a symbol")):
        record = await chat.send(chat.fake.payloads.slash_command("quote", option("symbol", typed)))
        assert record.callback_flags & EPHEMERAL and message in record.callback_data["content"]


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def chart_files(chat: Chat, *options: dict[str, Any]) -> tuple[int, list[Any]]:
    record = await chat.send(chat.fake.payloads.slash_command("chart", *options))
    if record.callback_type == 5:  # deferred: the picture comes with the edit of the original response
        edit = await chat.fake.wait_for_request(
            lambda r: r.method == "PATCH" and r.path.endswith("/messages/@original"), include_recorded=True
        )
        return record.callback_flags, edit.files
    return record.callback_flags, [f for r in record.attempts for f in r.files]


async def test_chart_of_a_symbol_is_a_png_from_the_minute_bars(chat: Chat) -> None:
    async with chat.db.system_scope("test.bars") as s:
        for minute in range(30):
            await run_sql(
                s,
                text(
                    "INSERT INTO price_bars (symbol, minute, open, high, low, close, volume, source)"
                    " VALUES ('AAPL', :ts, :p, :p, :p, :p, 1, 'sim')"
                ),
                {"ts": chat.clock().replace(second=0) - timedelta(minutes=minute), "p": Decimal(200 + minute)},
            )
    flags, files = await chart_files(chat, option("what", "AAPL"), option("period", "1d"))
    assert not flags & EPHEMERAL
    assert [f.filename for f in files] == ["AAPL.png"] and png_size(files[0].data) == (800, 400)


async def test_chart_of_the_portfolio_is_private(chat: Chat) -> None:
    flags, files = await chart_files(chat, option("what", "portfolio"))
    assert flags & EPHEMERAL
    assert [f.filename for f in files] == ["equity.png"] and png_size(files[0].data) == (800, 400)


async def test_chart_autocomplete_offers_the_portfolio_and_symbols(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.autocomplete("chart", option("what", "po", focused=True)))
    assert record.callback_data["choices"][0] == {"name": "portfolio — your equity", "value": "portfolio"}


async def test_help_lists_the_commands_with_plain_language_examples(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("help"))
    content = record.callback_data["content"]
    for command in ("/portfolio", "/buy", "/alert add", "/pnl", "/cancel"):
        assert command in content
    assert '"how is my AAPL position?"' in content and "Cost basis is average cost" in content
