"""The dashboard's pages and their forms. Each handler runs for the cookie's user (web_session.signed_in), calls the
Desk (which opens that user's scope: RLS shows nobody else's rows) and renders a template.

Each live-updated part of a page is a fragment template (_summary.html, _orders.html, ...) rendered by
`render_topics` both into the page and, later, by the live hub when something changes; fragments hold no CSRF token
(their buttons submit the page's `#act` form), so the hub can render them without a request.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any
from uuid import UUID

from aiohttp import web

from core.charts import PERIODS
from core.errors import InvalidInput, NotFound
from core.orders.broker import OPEN_STATUSES
from tools.desk import Desk
from webhooks.templating import environment
from webhooks.web_session import DESK, Visitor, message, render, signed_in

TOPICS = ("portfolio", "orders", "alerts", "inbox", "plan")
RECENT_ORDERS = 25


async def topic_context(desk: Desk, user: UUID, topic: str) -> dict[str, Any]:
    """What a topic's fragments need, read in the user's own scope."""
    if topic == "portfolio":
        return {"view": await desk.portfolio(user)}
    if topic == "orders":
        return {
            "open_orders": await desk.orders(user, "open", limit=100),
            "recent_orders": [
                o for o in await desk.orders(user, "all", limit=RECENT_ORDERS) if o.status not in OPEN_STATUSES
            ],
        }
    if topic == "alerts":
        return {"alerts": await desk.alerts(user)}
    if topic == "inbox":
        return {"inbox": await desk.inbox(user)}
    if topic == "plan":
        return {"plan": await desk.plan(user)}
    raise InvalidInput(f"Unknown topic {topic!r}: use {', '.join(TOPICS)}.")


FRAGMENTS = {
    "portfolio": ("_summary.html", "_positions.html"),
    "orders": ("_orders.html",),
    "alerts": ("_alerts.html",),
    "inbox": ("_inbox.html",),
    "plan": ("_plan.html",),
}


def fragment_id(template: str) -> str:
    return template.removeprefix("_").removesuffix(".html")


def topic_renderer(desk: Desk) -> Callable[[UUID, frozenset[str]], Awaitable[dict[str, str]]]:
    """For the live hub: {element id: HTML} of a user's fragments for `topics`, rendered as the pages render them."""
    env = environment()

    async def render_topics(user: UUID, topics: frozenset[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for topic in sorted(topics):
            context = await topic_context(desk, user, topic)
            for template in FRAGMENTS[topic]:
                out[fragment_id(template)] = env.get_template(template).render(context)
        return out

    return render_topics


# -- pages -----------------------------------------------------------------------------------------------------


@signed_in
async def overview(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    context = await topic_context(request.app[DESK], visitor.user, "portfolio")
    return render(request, "overview.html", "Overview", {**context, "chat": []}, visitor=visitor, topics=("portfolio",))


@signed_in
async def positions(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    context = await topic_context(request.app[DESK], visitor.user, "portfolio")
    return render(request, "positions.html", "Positions", context, visitor=visitor, topics=("portfolio",))


def simple_page(topic: str, title: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    @signed_in
    async def handler(request: web.Request, visitor: Visitor) -> web.StreamResponse:
        context = await topic_context(request.app[DESK], visitor.user, topic)
        context["flash"] = flash_of(request)
        return render(request, f"{topic}.html", title, context, visitor=visitor, topics=(topic,))

    return handler


orders = simple_page("orders", "Orders")
alerts = simple_page("alerts", "Alerts")
inbox = simple_page("inbox", "Notifications")
plan = simple_page("plan", "Plan")

# After a form's POST the browser is sent back (303) with what happened in the query: a reload then doesn't repeat it.
FLASHES = {
    "canceled": "Order {} canceled.",
    "deleted": "Alert {} deleted.",
    "read": "All notifications marked read.",
}
_SHORT = re.compile(r"[0-9a-f]{8}")


def flash_of(request: web.Request) -> str | None:
    for key, text in FLASHES.items():
        value = request.query.get(key)
        if value is not None and (not value or _SHORT.fullmatch(value)):
            return text.format(value)
    return None


def object_id(request: web.Request) -> UUID:
    """The id in the path; a malformed one is simply not found, like another user's."""
    try:
        return UUID(request.match_info["id"])
    except ValueError:
        raise NotFound("There's nothing of yours with that id.") from None


# -- forms -----------------------------------------------------------------------------------------------------


@signed_in
async def cancel_order(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    order = await request.app[DESK].cancel_order(visitor.user, object_id(request))
    raise web.HTTPSeeOther(f"/orders?canceled={order.id.hex[:8]}")


@signed_in
async def delete_alert(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    alert_id = object_id(request)
    await request.app[DESK].remove_alert(visitor.user, alert_id)
    raise web.HTTPSeeOther(f"/alerts?deleted={alert_id.hex[:8]}")


@signed_in
async def mark_read(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await request.app[DESK].mark_inbox_read(visitor.user)
    raise web.HTTPSeeOther("/inbox?read=")


@signed_in
async def upgrade(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    link = await request.app[DESK].upgrade_link(visitor.user)
    if link is None:
        return message(request, "You're on Pro", "Your plan is Pro already.", visitor=visitor, back="/plan")
    raise web.HTTPSeeOther(link.url)


@signed_in
async def portal(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    raise web.HTTPSeeOther(await request.app[DESK].billing_link(visitor.user))


# -- charts ----------------------------------------------------------------------------------------------------


def period_of(request: web.Request, default: str) -> str:
    period = request.query.get("period", default)
    if period not in PERIODS:
        raise InvalidInput(f"Unknown chart period {period[:10]!r}: use one of {', '.join(PERIODS)}.")
    return period


@signed_in
async def equity_chart(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    png = await request.app[DESK].chart_portfolio(visitor.user, period_of(request, "1m"))
    return web.Response(body=png, content_type="image/png")


@signed_in
async def price_chart(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    png = await request.app[DESK].chart_symbol(request.match_info["symbol"], period_of(request, "1d"))
    return web.Response(body=png, content_type="image/png")


# -- where Checkout and the portal send the user back ---------------------------------------------------------

_BILLING_DONE = {
    "/billing/success": ("You're on Pro", "Thanks! Pro turns on as soon as the payment is confirmed, usually within "
                         "seconds; the bot will DM you."),
    "/billing/cancel": ("No change", "Checkout was canceled; nothing was charged. You can upgrade any time."),
    "/billing/return": ("All set", "Your billing changes are saved."),
}  # fmt: skip


async def billing_done(request: web.Request) -> web.StreamResponse:
    heading, text = _BILLING_DONE[request.path]
    return message(request, heading, text, back="/plan")
