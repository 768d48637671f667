"""Who is asking, on the dashboard: the session cookie, CSRF and same-origin checks, and rendering in one place.

- The cookie holds a random session secret; the database keeps only its SHA-256 (nothing to sign, nothing to forge:
  the "signed cookie" of DESIGN section 7 is this). HttpOnly, SameSite=Lax, Path=/, and Secure with the __Host-
  prefix when TRADEDESK_PUBLIC_URL is https.
- Every POST carries a per-session CSRF token (an HMAC keyed by the session secret), in the `csrf` form field or the
  X-CSRF-Token header, and a POST whose Origin is another site is refused outright (that also stops login CSRF).
- Handlers wrapped by `signed_in` get a Visitor; the user id comes from the cookie, never from the request's body.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp_jinja2
from aiohttp import web

from core.auth.service import csrf_ok, csrf_token
from tools.desk import Desk

log = logging.getLogger(__name__)

DESK = web.AppKey("dashboard_desk", Desk)
COOKIE = web.AppKey("dashboard_cookie", str)
SECURE = web.AppKey("dashboard_secure", bool)
ORIGINS = web.AppKey("dashboard_origins", frozenset[str])

RUN_DASHBOARD = "Run /dashboard in Discord (or in tradedesk chat) to get a new sign-in link."
NAV = (("/", "Overview"), ("/positions", "Positions"), ("/orders", "Orders"), ("/alerts", "Alerts"),
       ("/inbox", "Inbox"), ("/plan", "Plan"))  # fmt: skip


@dataclass(frozen=True)
class Visitor:
    user: UUID
    session: str  # the cookie's secret

    @property
    def csrf(self) -> str:
        return csrf_token(self.session)


def configure(app: web.Application, desk: Desk, public_url: str) -> None:
    parts = urlsplit(public_url)
    secure = parts.scheme == "https"
    app[DESK] = desk
    app[SECURE] = secure
    # __Host-: the browser then insists on Secure, Path=/ and no Domain, so no sibling subdomain can plant one.
    app[COOKIE] = "__Host-tradedesk_session" if secure else "tradedesk_session"
    app[ORIGINS] = frozenset({f"{parts.scheme}://{parts.netloc}".lower()})


async def current_session(request: web.Request) -> tuple[UUID, str] | None:
    """The signed-in user and their session secret, or None."""
    token = request.cookies.get(request.app[COOKIE])
    if not token:
        return None
    user = await request.app[DESK].web_user(token)
    return None if user is None else (user, token)


def same_origin(request: web.Request) -> bool:
    """False for a request another site's page sent (browsers send Origin with form POSTs and websocket opens)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return True
    origin = origin.lower()
    return origin in request.app[ORIGINS] or origin == f"{request.scheme}://{request.host}".lower()


def wants_json(request: web.Request) -> bool:
    return "application/json" in request.headers.get("Accept", "")


def render(
    request: web.Request,
    template: str,
    title: str,
    context: Mapping[str, Any] | None = None,
    *,
    visitor: Visitor | None = None,
    status: int = 200,
    topics: tuple[str, ...] = (),
) -> web.Response:
    """A whole page: `template` extends base.html; the nav and sign-out form appear for a signed-in visitor."""
    ctx: dict[str, Any] = {
        "title": title,
        "signed_in": visitor is not None,
        "csrf": visitor.csrf if visitor else "",
        "nav": NAV,
        "current": request.path,
        "topics": topics,
        "flash": None,
        "hint": None,
        "back": None,
    }
    ctx.update(context or {})
    return aiohttp_jinja2.render_template(template, request, ctx, status=status)


def message(
    request: web.Request, heading: str, text: str, status: int = 200, *, visitor: Visitor | None = None, **extra: Any
) -> web.Response:
    if wants_json(request):
        return web.json_response({"error": text} if status >= 400 else {"message": text}, status=status)
    context = {"heading": heading, "text": text, **extra}
    return render(request, "message.html", heading, context, visitor=visitor, status=status)


def not_signed_in(request: web.Request) -> web.Response:
    return message(request, "You're not signed in", RUN_DASHBOARD, 401)


Handler = Callable[[web.Request, Visitor], Awaitable[web.StreamResponse]]


def signed_in(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Run `handler` for the cookie's user; a POST must also come from our own pages and carry the CSRF token."""

    @functools.wraps(handler)
    async def wrapper(request: web.Request) -> web.StreamResponse:
        if request.method == "POST" and not same_origin(request):
            log.info("dashboard: refused a POST from origin %r", request.headers.get("Origin", "")[:100])
            return message(request, "Refused", "That request came from another site.", 403)
        found = await current_session(request)
        if found is None:
            return not_signed_in(request)
        visitor = Visitor(*found)
        if request.method == "POST":
            form = await request.post()
            submitted = request.headers.get("X-CSRF-Token") or form.get("csrf")
            if not csrf_ok(visitor.session, submitted if isinstance(submitted, str) else None):
                text = "This form has expired. Reload the page and try again."
                return message(request, "Refused", text, 403, visitor=visitor)
        return await handler(request, visitor)

    return wrapper
