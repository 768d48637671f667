"""The aiohttp side-app: health now; Stripe webhooks and the dashboard come with their issues."""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from core.config import Settings
from core.db.database import Database

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
DATABASE = web.AppKey("database", Database)
VERSION = web.AppKey("version", str)

_DB_TIMEOUT_S = 2.0


async def healthz(request: web.Request) -> web.Response:
    """Liveness and readiness: 200 when the database answers, 503 otherwise."""
    db = request.app[DATABASE]
    try:
        await asyncio.wait_for(db.ping(), _DB_TIMEOUT_S)
        db_state = "ok"
    except Exception as exc:  # noqa: BLE001 -- any failure means "not ready"; the log says which
        log.warning("healthz: database check failed: %s: %s", type(exc).__name__, exc)
        db_state = "unavailable"
    ok = db_state == "ok"
    body = {"status": "ok" if ok else "degraded", "db": db_state, "version": request.app[VERSION]}
    return web.json_response(body, status=200 if ok else 503)


def create_app(settings: Settings, *, database: Database, version: str) -> web.Application:
    app = web.Application()
    app[SETTINGS] = settings
    app[DATABASE] = database
    app[VERSION] = version
    app.router.add_get("/healthz", healthz)
    return app
