"""The dashboard's chat box: the same agent as Discord and the console (tools/agent.py), with the same confirm flow.

The agent only ever proposes orders; a proposal is shown with Confirm and Cancel forms, and only their POST (with
the session's CSRF token) places or drops it, through the same Desk.confirm as Discord's buttons. chat.js sends the
forms with fetch (Accept: application/json) and inserts the server-rendered HTML it gets back; without script the
same forms post normally and the overview comes back with the exchange in it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from uuid import UUID

from aiohttp import web

from core.errors import InvalidInput
from core.orders.models import OrderView
from core.orders.proposals import Confirmed, Proposal
from tools.agent import Agent
from tools.context import ToolContext
from webhooks.pages import object_id, topic_context
from webhooks.templating import environment
from webhooks.web_session import DESK, Visitor, render, signed_in, wants_json

AGENT = web.AppKey("dashboard_agent", Agent)


@dataclass
class Turn:
    question: str | None = None
    answer: str | None = None
    proposals: list[Proposal] = field(default_factory=list)
    images: list[str] = field(default_factory=list)  # base64 PNGs (charts the assistant drew)
    orders: dict[UUID, OrderView] = field(default_factory=dict)  # proposal id -> the order its confirm placed
    notes: dict[UUID, str] = field(default_factory=dict)  # proposal id -> what happened instead


async def show(request: web.Request, visitor: Visitor, turn: Turn) -> web.StreamResponse:
    """The turn as an HTML fragment for chat.js, or the whole overview with the turn in it (no script)."""
    if wants_json(request):
        template = environment().get_template("_chat_turn.html")
        return web.json_response({"html": template.render(turn=turn, csrf=visitor.csrf)})
    context = await topic_context(request.app[DESK], visitor.user, "portfolio")
    context["chat"] = [turn]
    return render(request, "overview.html", "Overview", context, visitor=visitor, topics=("portfolio",))


@signed_in
async def ask(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    form = await request.post()
    text = form.get("message")
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("Type a message first.")
    ctx = ToolContext(visitor.user, request.app[DESK], origin="web")
    reply = await request.app[AGENT].ask(ctx, text)
    images = [base64.b64encode(png).decode() for _, png in reply.attachments]
    return await show(request, visitor, Turn(text.strip(), reply.text, reply.proposals, images))


@signed_in
async def confirm(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    result = await request.app[DESK].confirm(visitor.user, object_id(request))
    if isinstance(result, Confirmed):
        return await show(
            request, visitor, Turn(proposals=[result.proposal], orders={result.proposal.id: result.order})
        )
    moved = f"The price moved {result.drift_bps:.0f} bps since; nothing was placed. Here it is at the new price."
    return await show(request, visitor, Turn(proposals=[result.old, result.new], notes={result.old.id: moved}))


@signed_in
async def cancel(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    proposal = await request.app[DESK].cancel_proposal(visitor.user, object_id(request))
    return await show(request, visitor, Turn(proposals=[proposal], notes={proposal.id: "Dropped; nothing was placed."}))
