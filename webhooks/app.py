"""The aiohttp side-app: health, metrics (webhooks/observe.py, which also gives every request an id and counts it),
the Stripe webhook, the billing pages (and the simulator's, offline), and the dashboard (webhooks/dashboard.py:
pages, the chat box, and where Checkout sends the user back)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from uuid import UUID

from aiohttp import web

from core.billing.gateway import BillingGateway
from core.config import Settings
from core.db.database import Database
from tools.agent import Agent
from tools.desk import Desk
from webhooks.billing_sim import BillingSimulator, add_simulator_routes
from webhooks.dashboard import add_dashboard_routes, security_headers
from webhooks.live import LiveHub, add_live_routes
from webhooks.observe import add_metrics_route, observe
from webhooks.stripe import add_stripe_routes
from webhooks.web_session import ORIGINS, current_session

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
VERSION = web.AppKey("version", str)
FEED_STATUS = web.AppKey[Callable[[], str] | None]("feed_status")
BOT_STATUS = web.AppKey[Callable[[], str] | None]("bot_status")

_DB_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: 200 when the database answers, 503 otherwise.

    `feed` (ok, stale or down) is reported when this process runs the market feed, and `bot` (ok, connecting or
    down) when it runs the Discord bot; neither changes the status code, because the web side works from the
    database whatever they do.
    """
    db = request.app[DATABASE]
    try:
        await asyncio.wait_for(db.ping(), _DB_TIMEOUT_S)
        db_state = "ok"
    except Exception as exc:  # noqa: BLE001 -- any failure means "not ready"; the log says which
        log.warning("healthz: database check failed: %s: %s", type(exc).__name__, exc)
        db_state = "unavailable"
    ok = db_state == "ok"
    body = {"status": "ok" if ok else "degraded", "db": db_state, "version": request.app[VERSION]}
    feed_status = request.app[FEED_STATUS]
    if feed_status is not None:
        body["feed"] = feed_status()
    bot_status = request.app[BOT_STATUS]
    if bot_status is not None:
        body["bot"] = bot_status()
    return web.json_response(body, status=200 if ok else 503)


def create_app(
    settings: Settings,
    *,
    database: Database,
    version: str,
    feed_status: Callable[[], str] | None = None,
    bot_status: Callable[[], str] | None = None,
    billing: BillingGateway | None = None,
    webhook_secret: str | None = None,
    desk: Desk | None = None,
    agent: Agent | None = None,
    live: LiveHub | None = None,
) -> web.Application:
    app = web.Application(middlewares=[observe, security_headers])
    app[SETTINGS] = settings
    app[DATABASE] = database
    app[VERSION] = version
    app[FEED_STATUS] = feed_status
    app[BOT_STATUS] = bot_status
    app.router.add_get("/healthz", healthz)
    add_metrics_route(app)
    if billing is not None and webhook_secret is not None:
        add_stripe_routes(app, database=database, billing=billing, webhook_secret=webhook_secret)
        if isinstance(billing, BillingSimulator):
            add_simulator_routes(app, billing)
    if desk is not None:
        add_dashboard_routes(app, desk, public_url=settings.public_url, agent=agent)
        if live is not None:
            add_live_routes(app, live, signed_in_user, origins=app[ORIGINS])
    return app


async def signed_in_user(request: web.Request) -> UUID | None:
    """The dashboard cookie's user, for the live socket."""
    session = await current_session(request)
    return None if session is None else session[0]
