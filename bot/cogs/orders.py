"""Order commands: /buy and /sell (a proposal to confirm by button), /orders, /cancel."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

from bot import parse
from bot.buttons import proposal_view
from bot.cogs import symbol_autocomplete, who, with_notice
from bot.render import order_line, order_result_embed, orders_embed, proposal_embed
from bot.reply import Reply, answer
from core.errors import InvalidInput
from core.orders.broker import OrderType, Side, TimeInForce
from tools.desk import Desk, OrderDraft

TYPES = [
    app_commands.Choice(name="market", value="market"),
    app_commands.Choice(name="limit", value="limit"),
    app_commands.Choice(name="stop", value="stop"),
    app_commands.Choice(name="stop-limit", value="stop_limit"),
]
TIFS = [
    app_commands.Choice(name="day (until the session closes)", value="day"),
    app_commands.Choice(name="good till canceled", value="gtc"),
    app_commands.Choice(name="immediate or cancel", value="ioc"),
]
STATUSES = [app_commands.Choice(name=s, value=s) for s in ("open", "filled", "canceled", "all")]

_ORDER_OPTIONS = {
    "symbol": "A ticker like AAPL or a pair like BTC-USD",
    "qty": "How many shares or coins, e.g. 10 or 0.015",
    "type": "Order type (default: market)",
    "limit": "Limit price, for limit and stop-limit orders",
    "stop": "Stop price, for stop and stop-limit orders",
    "tif": "How long the order stays open (default: day)",
    "portfolio": "Which portfolio (default: your main one)",
}


class OrdersCog(commands.Cog, name="Orders"):
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    async def _propose(
        self,
        interaction: discord.Interaction,
        side: Side,
        symbol: str,
        qty: str,
        kind: app_commands.Choice[str] | None,
        limit: str | None,
        stop: str | None,
        tif: app_commands.Choice[str] | None,
        portfolio: str | None,
    ) -> None:
        async def work() -> Reply:
            order_type = OrderType(kind.value) if kind else OrderType.MARKET
            draft = OrderDraft(
                symbol=symbol,
                side=side,
                qty=parse.amount(qty, "quantity"),
                type=order_type,
                tif=TimeInForce(tif.value) if tif else TimeInForce.DAY,
                limit_price=parse.optional_amount(limit, "limit price"),
                stop_price=parse.optional_amount(stop, "stop price"),
                portfolio=portfolio,
            )
            if draft.limit_price is not None and order_type not in (OrderType.LIMIT, OrderType.STOP_LIMIT):
                raise InvalidInput(f"A {order_type.replace('_', '-')} order takes no limit price: leave it out.")
            if draft.stop_price is not None and order_type not in (OrderType.STOP, OrderType.STOP_LIMIT):
                raise InvalidInput(f"A {order_type.replace('_', '-')} order takes no stop price: leave it out.")
            person = await who(self.desk, interaction)
            proposal = await self.desk.propose(person.user_id, draft)
            reply = Reply(embeds=[proposal_embed(proposal)], view=proposal_view(proposal, interaction.user.id))
            return with_notice(reply, person)

        await answer(interaction, work())

    @app_commands.command(name="buy")
    @app_commands.describe(**_ORDER_OPTIONS)
    @app_commands.choices(type=TYPES, tif=TIFS)
    async def buy(
        self,
        interaction: discord.Interaction,
        symbol: str,
        qty: str,
        type: app_commands.Choice[str] | None = None,
        limit: str | None = None,
        stop: str | None = None,
        tif: app_commands.Choice[str] | None = None,
        portfolio: str | None = None,
    ) -> None:
        """Buy on paper: shows the order priced at the live quote, with Confirm / Cancel buttons."""
        await self._propose(interaction, Side.BUY, symbol, qty, type, limit, stop, tif, portfolio)

    @app_commands.command(name="sell")
    @app_commands.describe(**_ORDER_OPTIONS)
    @app_commands.choices(type=TYPES, tif=TIFS)
    async def sell(
        self,
        interaction: discord.Interaction,
        symbol: str,
        qty: str,
        type: app_commands.Choice[str] | None = None,
        limit: str | None = None,
        stop: str | None = None,
        tif: app_commands.Choice[str] | None = None,
        portfolio: str | None = None,
    ) -> None:
        """Sell on paper: shows the order priced at the live quote, with Confirm / Cancel buttons."""
        await self._propose(interaction, Side.SELL, symbol, qty, type, limit, stop, tif, portfolio)

    @buy.autocomplete("symbol")
    @sell.autocomplete("symbol")
    async def _symbol(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await symbol_autocomplete(self.desk, current)

    @app_commands.command(name="orders")
    @app_commands.describe(status="Which orders (default: open)")
    @app_commands.choices(status=STATUSES)
    async def orders(self, interaction: discord.Interaction, status: app_commands.Choice[str] | None = None) -> None:
        """Your paper orders, newest first."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            chosen = status.value if status else "open"
            found = await self.desk.orders(person.user_id, chosen)
            return with_notice(Reply(embeds=[orders_embed(found, chosen)]), person)

        await answer(interaction, work())

    @app_commands.command(name="cancel")
    @app_commands.describe(order="One of your open orders (start typing its symbol)")
    async def cancel(self, interaction: discord.Interaction, order: str) -> None:
        """Cancel one of your open orders."""

        async def work() -> Reply:
            order_id = parse.object_id(order, "open order")
            person = await who(self.desk, interaction)
            canceled = await self.desk.cancel_order(person.user_id, order_id)
            return with_notice(Reply(embeds=[order_result_embed(canceled, simulated=False)]), person)

        await answer(interaction, work())

    @cancel.autocomplete("order")
    async def _open_orders(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        person = await who(self.desk, interaction)
        found = await self.desk.open_order_choices(person.user_id, current)
        return [app_commands.Choice(name=order_line(o).replace("`", "")[:100], value=str(o.id)) for o in found]
