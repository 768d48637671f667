"""The web dashboard: sign-in with the one-time link from /dashboard, pages over the Desk, the chat box.

- GET /login/{token} only shows a "Sign in" button: Discord (and chat apps generally) fetch links to preview them,
  so a GET must never use the token up. POST /login/{token} redeems it, opens a session and sets the cookie
  (web_session.py says what the cookie holds and how POSTs are checked).
- Pages (pages.py) and the chat box (web_chat.py) are Jinja2 templates, autoescaped; the only scripts are our own
  files under /static (chat.js for the chat box, live.js for the live updates), so the CSP allows no inline script.
- This module owns what is the same for every dashboard response: the security headers, and the one mapping of
  domain errors to pages (or JSON for chat.js): NotFound is 404, so a guessed id looks exactly like a missing one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp_jinja2
from aiohttp import web

from core.auth.service import LOGIN_REJECTED, SESSION_TTL, InvalidLogin
from core.billing.gateway import BillingRejected, BillingUnavailable
from core.errors import DomainError, EntitlementRequired, InvalidInput, NotFound
from tools.agent import Agent
from tools.desk import Desk
from webhooks import pages, web_chat
from webhooks.templating import environment
from webhooks.web_session import (
    COOKIE,
    DESK,
    RUN_DASHBOARD,
    SECURE,
    Visitor,
    configure,
    current_session,
    message,
    render,
    same_origin,
    signed_in,
)

log = logging.getLogger(__name__)

__all__ = ["add_dashboard_routes", "current_session", "security_headers"]

HERE = Path(__file__).parent
DASHBOARD_RESOURCES = web.AppKey("dashboard_resources", set[web.AbstractResource])

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; style-src 'self'; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; "
        # Upgrade and Manage billing are form POSTs answered by a redirect to Stripe: form-action covers redirects.
        "form-action 'self' https://checkout.stripe.com https://billing.stripe.com"
    ),
    "X-Frame-Options": "DENY",
    # Not no-referrer: with it Chromium sends `Origin: null` on every POST (sign-in, forms, chat), which
    # foreign_origin must refuse. same-origin still keeps a login URL out of any other site's Referer.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_status(exc: DomainError) -> int:
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, InvalidLogin | InvalidInput):
        return 400
    if isinstance(exc, EntitlementRequired):
        return 402
    return 409  # a trading or billing rule said no (buying power, a closed market, an expired proposal)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The dashboard's security headers and its error pages (routes that aren't the dashboard's are left alone)."""
    resource = request.match_info.route.resource
    if resource is None or resource not in request.app.get(DASHBOARD_RESOURCES, set()):
        return await handler(request)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    except DomainError as exc:
        response = message(request, "That didn't work", exc.message, error_status(exc), back="/")
    except BillingUnavailable:
        response = message(request, "Billing is unavailable", "Billing can't be reached right now; try again in a "
                           "minute.", 503, back="/plan")  # fmt: skip
    except BillingRejected as exc:
        log.error("dashboard: the billing provider refused a request (%s): check the Stripe settings", exc)
        response = message(request, "Billing is misconfigured", "Billing is misconfigured on our side; it has "
                           "been logged.", 502, back="/plan")  # fmt: skip
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("dashboard: %s %s failed (reference %s)", request.method, request.path, reference)
        text = f"Something went wrong on our side (reference {reference}). Please try again."
        response = message(request, "Sorry", text, 500, back="/")
    response.headers.update(SECURITY_HEADERS)
    return response


def add_dashboard_routes(app: web.Application, desk: Desk, *, public_url: str, agent: Agent | None = None) -> None:
    configure(app, desk, public_url)
    app[aiohttp_jinja2.APP_KEY] = environment()
    routes = [
        app.router.add_get("/login/{token}", login_page),
        app.router.add_post("/login/{token}", login),
        app.router.add_post("/logout", logout),
        app.router.add_get("/", pages.overview),
        app.router.add_get("/positions", pages.positions),
        app.router.add_get("/orders", pages.orders),
        app.router.add_post("/orders/{id}/cancel", pages.cancel_order),
        app.router.add_get("/alerts", pages.alerts),
        app.router.add_post("/alerts/{id}/delete", pages.delete_alert),
        app.router.add_get("/inbox", pages.inbox),
        app.router.add_post("/inbox/read", pages.mark_read),
        app.router.add_get("/plan", pages.plan),
        app.router.add_post("/plan/upgrade", pages.upgrade),
        app.router.add_post("/plan/portal", pages.portal),
        app.router.add_get("/charts/equity.png", pages.equity_chart),
        app.router.add_get("/charts/price/{symbol}.png", pages.price_chart),
        app.router.add_get("/billing/success", pages.billing_done),
        app.router.add_get("/billing/cancel", pages.billing_done),
        app.router.add_get("/billing/return", pages.billing_done),
    ]
    if agent is not None:
        app[web_chat.AGENT] = agent
        routes += [
            app.router.add_post("/chat", web_chat.ask),
            app.router.add_post("/proposals/{id}/confirm", web_chat.confirm),
            app.router.add_post("/proposals/{id}/cancel", web_chat.cancel),
        ]
    static = app.router.add_static("/static", HERE / "static", append_version=False)
    resources = {route.resource for route in routes if route.resource is not None}
    app[DASHBOARD_RESOURCES] = resources | {static}


# -- sign-in ------------------------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.StreamResponse:
    """The link from /dashboard lands here. Showing the page changes nothing: the button's POST redeems it."""
    return render(request, "login.html", "Sign in", {"action": request.path})


async def login(request: web.Request) -> web.StreamResponse:
    if not same_origin(request):
        # Not the path in the log: a login path holds a live token.
        log.info("dashboard: refused a sign-in POST from origin %r", request.headers.get("Origin", "")[:100])
        return message(request, "Refused", "That request came from another site.", 403)
    try:
        session = await request.app[DESK].sign_in(request.match_info["token"], request.headers.get("User-Agent"))
    except InvalidLogin:
        return message(request, "This link can't be used", LOGIN_REJECTED, 400)
    response = web.Response(status=303, headers={"Location": "/"})
    response.set_cookie(
        request.app[COOKIE],
        session,
        max_age=int(SESSION_TTL.total_seconds()),
        path="/",
        secure=request.app[SECURE],
        httponly=True,
        samesite="Lax",
    )
    return response


@signed_in
async def logout(request: web.Request, visitor: Visitor) -> web.StreamResponse:
    await request.app[DESK].sign_out(visitor.user, visitor.session)
    response = message(request, "You're signed out", RUN_DASHBOARD)
    response.del_cookie(request.app[COOKIE], path="/", secure=request.app[SECURE], httponly=True, samesite="Lax")
    return response
