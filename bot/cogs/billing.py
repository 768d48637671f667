"""/upgrade and /billing: links to Checkout and the Billing Portal, sent privately and never through the outbox
(they expire; a DM could be held back by quiet hours)."""

from __future__ import annotations

import logging

import discord
from discord import app_commands
from discord.ext import commands

from bot.cogs import who, with_notice
from bot.reply import Reply, answer
from core.billing.gateway import BillingRejected, BillingUnavailable
from core.errors import DomainError
from tools.desk import Desk

log = logging.getLogger("tradedesk.bot")
UNAVAILABLE = "Billing is unavailable right now; please try again in a minute."


class BillingUnreachable(DomainError):
    code = "billing_unavailable"


def _link(label: str, url: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(discord.ui.Button(label=label, url=url, style=discord.ButtonStyle.link))
    return view


class BillingCog(commands.Cog, name="Billing"):
    def __init__(self, desk: Desk) -> None:
        self.desk = desk

    @app_commands.command(name="upgrade")
    async def upgrade(self, interaction: discord.Interaction) -> None:
        """Upgrade to Pro: more alerts, more AI questions a day, every order type."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            try:
                link = await self.desk.upgrade_link(person.user_id)
            except BillingUnavailable:
                raise BillingUnreachable(UNAVAILABLE) from None
            except BillingRejected as exc:  # our configuration (a key or price id), not the user's doing
                log.error("billing: Stripe refused the checkout (%s, %s): check STRIPE_* settings", exc.status, exc)
                raise BillingUnreachable(UNAVAILABLE) from None
            if link is None:
                return with_notice(Reply(content="You're on Pro already. /billing manages your subscription."), person)
            simulated = (
                " (simulated: no card is charged)"
                if self.desk.billing and self.desk.billing.mode == "simulator"
                else ""
            )
            text = f"Here is your private checkout link{simulated}. It works for a limited time."
            return with_notice(Reply(content=text, view=_link("Upgrade to Pro", link.url)), person)

        await answer(interaction, work())

    @app_commands.command(name="billing")
    async def billing(self, interaction: discord.Interaction) -> None:
        """Your plan, and a private link to manage your subscription and payment method."""

        async def work() -> Reply:
            person = await who(self.desk, interaction)
            plan = await self.desk.plan(person.user_id)
            status = f"You're on **{plan.plan.title()}**"
            if plan.status:
                status += f" (subscription {plan.status.replace('_', ' ')}"
                if plan.current_period_end:
                    ends = "ends" if plan.cancel_at_period_end else "renews"
                    status += f", {ends} {discord.utils.format_dt(plan.current_period_end, 'D')}"
                status += ")"
            if not plan.has_customer:
                return with_notice(Reply(content=f"{status}. /upgrade to get Pro."), person)
            try:
                url = await self.desk.billing_link(person.user_id)
            except BillingUnavailable:
                raise BillingUnreachable(UNAVAILABLE) from None
            except BillingRejected as exc:
                log.error("billing: Stripe refused the portal session (%s, %s): check the portal's configuration",
                          exc.status, exc)  # fmt: skip
                raise BillingUnreachable(UNAVAILABLE) from None
            text = f"{status}. Manage your subscription and payment method here (the link expires soon):"
            return with_notice(Reply(content=text, view=_link("Manage billing", url)), person)

        await answer(interaction, work())
