"""What a tool knows about the call it serves: who asks (from the transport, never from the model) and the Desk."""

from __future__ import annotations

from dataclasses import dataclass, field
from uuid import UUID

from core.orders.proposals import Proposal
from tools.desk import Desk


@dataclass
class ToolContext:
    user_id: UUID  # from resolve_identity on the Discord interaction or console handle
    desk: Desk
    origin: str = "agent"  # order_proposals.origin: agent (the model or the planner) or web
    # What the turn produced besides text: proposals to show with Confirm / Cancel, chart images to attach.
    proposals: list[Proposal] = field(default_factory=list)
    attachments: list[tuple[str, bytes]] = field(default_factory=list)
