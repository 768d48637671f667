"""Confirm / Cancel buttons of an order proposal.

The proposal id (and the Discord id of the user who asked) travel in the custom_id, so the click can be handled by
any bot process, or this one after a restart: a `DynamicItem` parses it back, with no view kept in memory. Only the
user who asked may press them; the database (RLS) would refuse anyone else anyway, this check just says so nicely.
A click delivered twice confirms once: the proposal row is locked and its order is bound to it (core/orders/proposals).
"""

from __future__ import annotations

import re
from typing import Any, Protocol
from uuid import UUID

import discord

from bot.errors import ReportingView, send_error
from bot.observe import interaction_started
from bot.render import order_result_embed, proposal_embed
from bot.reply import within_deadline
from core.orders.proposals import Confirmed, Proposal
from tools.desk import Desk


class HasDesk(Protocol):
    desk: Desk


def _desk(interaction: discord.Interaction) -> Desk:
    client: Any = interaction.client
    desk: Desk = client.desk
    return desk


class ProposalButton(
    discord.ui.DynamicItem[discord.ui.Button[Any]],
    template=r"td:proposal:(?P<action>confirm|cancel):(?P<id>[0-9a-f]{32}):(?P<owner>[0-9]{1,20})",
):
    def __init__(self, action: str, proposal_id: UUID, owner: int) -> None:
        confirm = action == "confirm"
        super().__init__(
            discord.ui.Button(
                label="Confirm" if confirm else "Cancel",
                style=discord.ButtonStyle.success if confirm else discord.ButtonStyle.secondary,
                custom_id=f"td:proposal:{action}:{proposal_id.hex}:{owner}",
            )
        )
        self.action, self.proposal_id, self.owner = action, proposal_id, owner

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> ProposalButton:
        return cls(match["action"], UUID(hex=match["id"]), int(match["owner"]))

    async def interaction_check(self, interaction: discord.Interaction, /) -> bool:
        interaction_started(interaction)  # the click's log lines carry its interaction id
        if interaction.user.id == self.owner:
            return True
        await interaction.response.send_message(
            "Only the person who asked for this order can confirm or cancel it.", ephemeral=True
        )
        return False

    async def callback(self, interaction: discord.Interaction) -> None:  # type: ignore[override]
        # discord.py only logs a dynamic item's errors: send them through the one mapper ourselves.
        try:
            await self._handle(interaction)
        except Exception as exc:  # noqa: BLE001 - every failure is reported to the user and logged once
            await send_error(interaction, exc)

    async def _handle(self, interaction: discord.Interaction) -> None:
        # The message is edited in place; if the work takes longer than Discord's patience allows, the click is
        # acknowledged first (a deferred update) so the user never sees "interaction failed" for a placed order.
        edit = await within_deadline(self._outcome(interaction), interaction.response.defer)
        if interaction.response.is_done():
            await interaction.edit_original_response(**edit)
        else:
            await interaction.response.edit_message(**edit)

    async def _outcome(self, interaction: discord.Interaction) -> dict[str, Any]:
        """What the proposal's message becomes after this click."""
        desk = _desk(interaction)
        who = await desk.identify_discord(interaction.user.id, interaction.user.name)
        if self.action == "cancel":
            proposal = await desk.cancel_proposal(who.user_id, self.proposal_id)
            if proposal.status == "confirmed":  # a confirm got there first (its message edit may have failed)
                text = "Too late to cancel: this order was already confirmed. /orders shows it."
                return {"content": text, "embed": None, "view": None}
            return {"content": "Canceled: nothing was placed.", "embed": None, "view": None}
        result = await desk.confirm(who.user_id, self.proposal_id)
        if isinstance(result, Confirmed):
            embed = order_result_embed(result.order, simulated=result.proposal.simulated)
            return {"content": None, "embed": embed, "view": None}
        note = (
            f"The price moved {result.drift_bps / 100:.2f}% since you asked, more than the "
            f"{desk.config.max_drift_bps / 100:.2f}% allowed without asking again. Here is the order at the new price:"
        )
        return {
            "content": None,
            "embed": proposal_embed(result.new, note=note),
            "view": proposal_view(result.new, self.owner),
        }


def proposal_view(proposal: Proposal, owner: int) -> discord.ui.View:
    view = ReportingView(timeout=None)
    view.add_item(ProposalButton("confirm", proposal.id, owner))
    view.add_item(ProposalButton("cancel", proposal.id, owner))
    return view
