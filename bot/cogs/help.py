"""/help: what the bot can do, with plain-language examples."""

from __future__ import annotations

import discord
from discord import app_commands
from discord.ext import commands

HELP = """**TradeDesk** — paper trading, live prices and price alerts, right here.

**Portfolio** `/portfolio` · `/positions` · `/pnl period` · `/quote symbol`
**Orders** `/buy symbol qty` and `/sell` (market, limit, stop, stop-limit; day, gtc, ioc) show the order at the live
price with Confirm / Cancel buttons: nothing trades until you confirm. `/orders` · `/cancel`
**Alerts** `/alert add symbol above|below|move value` · `/alert list` · `/alert remove` — checked on every tick and sent
to you by DM (keep DMs from server members open).
**Dashboard** `/dashboard` gives you a private, one-time link that signs you in to your web dashboard.

**Questions traders ask, and the command that answers them:**
• "how is my AAPL position?" → `/positions`
• "what did I make this week?" → `/pnl period:last 7 days`
• "alert me if ETH drops 5%" → `/alert add symbol:ETH-USD when:moves by a percent value:-5`
• "buy 10 TSLA" → `/buy symbol:TSLA qty:10` (you still confirm with a button)

Everything is paper trading: no real money moves. Replies about your money are visible only to you in servers.
Cost basis is average cost, fees included."""


class HelpCog(commands.Cog, name="Help"):
    @app_commands.command(name="help")
    async def help(self, interaction: discord.Interaction) -> None:
        """What TradeDesk can do, with examples of questions you can ask."""
        await interaction.response.send_message(HELP, ephemeral=interaction.guild_id is not None)
