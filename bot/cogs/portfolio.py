"""Portfolio commands: /portfolio, /positions, /pnl, /quote, /chart."""

from __future__ import annotations

import io

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs import symbol_autocomplete, who, with_notice
from bot.render import pnl_embed, portfolio_embed, positions_embed, quote_embed
from bot.reply import Reply, answer
from tools.desk import Desk

PORTFOLIO = "portfolio"
CHART_PERIODS = [
    app_commands.Choice(name="1 day", value="1d"),
    app_commands.Choice(name="1 week", value="1w"),
    app_commands.Choice(name="1 month", value="1m"),
    app_commands.Choice(name="3 months", value="3m"),
    app_commands.Choice(name="1 year", value="1y"),
]
PERIODS = [
    app_commands.Choice(name="today", value="day"),
    app_commands.Choice(name="last 7 days", value="week"),
    app_commands.Choice(name="last 30 days", value="month"),
    app_commands.Choice(name="last 365 days", value="year"),
    app_commands.Choice(name="all time", value="all"),
]


class PortfolioCog(commands.Cog, name="Portfolio"):
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @app_commands.command(name="portfolio")
    @app_commands.describe(name="Which portfolio (default: your main one)")
    async def portfolio(self, interaction: discord.Interaction, name: str | None = None) -> None:
        """Your paper portfolio: equity, cash, day change and P&L, at live prices."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            view = await self.desk.portfolio(person.user_id, name)
            return with_notice(Reply(embeds=[portfolio_embed(view)]), person)

        await answer(interaction, work())

    @app_commands.command(name="positions")
    @app_commands.describe(portfolio="Which portfolio (default: your main one)")
    async def positions(self, interaction: discord.Interaction, portfolio: str | None = None) -> None:
        """Your open positions with average cost, last price, value and unrealized P&L."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            view = await self.desk.portfolio(person.user_id, portfolio)
            return with_notice(Reply(embeds=[positions_embed(view)]), person)

        await answer(interaction, work())

    @app_commands.command(name="pnl")
    @app_commands.describe(period="Over what period (default: today)", portfolio="Which portfolio (default: main)")
    @app_commands.choices(period=PERIODS)
    async def pnl(
        self,
        interaction: discord.Interaction,
        period: app_commands.Choice[str] | None = None,
        portfolio: str | None = None,
    ) -> None:
        """Profit and loss over a period, deposits and withdrawals not counted."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            result = await self.desk.pnl(person.user_id, period.value if period else "day", portfolio)
            return with_notice(Reply(embeds=[pnl_embed(result)]), person)

        await answer(interaction, work())

    @app_commands.command(name="quote")
    @app_commands.describe(symbol="A ticker like AAPL or a pair like BTC-USD")
    async def quote(self, interaction: discord.Interaction, symbol: str) -> None:
        """The last price of a symbol."""

        async def work() -> Reply:
            instrument, quote = await self.desk.quote(symbol)
            return Reply(embeds=[quote_embed(instrument, quote)])

        await answer(interaction, work(), private=False)

    @quote.autocomplete("symbol")
    async def _quote_symbol(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return await symbol_autocomplete(self.desk, current)

    @app_commands.command(name="chart")
    @app_commands.describe(what="A symbol, or 'portfolio' for your equity", period="How far back (default: 1 day)")
    @app_commands.choices(period=CHART_PERIODS)
    async def chart(
        self, interaction: discord.Interaction, what: str, period: app_commands.Choice[str] | None = None
    ) -> None:
        """A chart of a symbol's price, or of your portfolio's equity."""
        mine = what.strip().lower() == PORTFOLIO
        span = period.value if period else "1d"

        async def work() -> Reply:
            if mine:
                person = await who(self.desk, interaction)
                png = await self.desk.chart_portfolio(person.user_id, span)
                return with_notice(Reply(files=[discord.File(io.BytesIO(png), "equity.png")]), person)
            png = await self.desk.chart_symbol(what, span)
            return Reply(files=[discord.File(io.BytesIO(png), f"{what.strip().upper()}.png")])

        # Rendering can take a second on a process's first chart: defer early rather than race the 3 s deadline.
        await answer(interaction, work(), private=mine, defer_after=1.0)

    @chart.autocomplete("what")
    async def _chart_what(self, interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        mine = [app_commands.Choice(name="portfolio — your equity", value=PORTFOLIO)]
        shown = mine if PORTFOLIO.startswith(current.strip().lower()) else []
        return (shown + await symbol_autocomplete(self.desk, current))[:25]
