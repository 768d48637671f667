"""The web dashboard: sign-in with the one-time link from /dashboard, and a read-only overview of the portfolio.

- GET /login/{token} only shows a "Sign in" button: Discord (and chat apps generally) fetch links to preview them,
  so a GET must never use the token up. POST /login/{token} redeems it, opens a session and sets the cookie.
- The cookie holds a random session secret; the database keeps its SHA-256 only (nothing to sign, nothing to forge).
  HttpOnly, SameSite=Lax, Path=/, Secure (with the __Host- prefix) when TRADEDESK_PUBLIC_URL is https.
- Every POST form carries a per-session CSRF token (an HMAC keyed by the session secret), and a POST whose Origin
  is another site is refused outright (that also stops login CSRF: signing a victim in as the attacker).
- Every page runs in the cookie user's own user_scope, through the Desk: RLS shows nobody else's rows.
- Pages are server-rendered HTML with every value escaped, one stylesheet, no script; a middleware sets CSP,
  framing, referrer (a login URL must not leak through Referer) and no-store headers on every dashboard response.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from urllib.parse import urlsplit
from uuid import UUID

from aiohttp import web

from core.auth.service import LOGIN_REJECTED, SESSION_TTL, InvalidLogin, csrf_ok, csrf_token
from core.errors import DomainError
from core.money import cents
from core.portfolio.service import PortfolioView, PositionView
from tools.desk import Desk

log = logging.getLogger(__name__)

DESK = web.AppKey("dashboard_desk", Desk)
COOKIE = web.AppKey("dashboard_cookie", str)
SECURE = web.AppKey("dashboard_secure", bool)
ORIGINS = web.AppKey("dashboard_origins", frozenset[str])
DASHBOARD_RESOURCES = web.AppKey("dashboard_resources", set[web.AbstractResource])

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
RUN_DASHBOARD = "Run <code>/dashboard</code> in Discord to get a new sign-in link."

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The dashboard's security headers, on its pages and its errors alike (other routes are left as they are)."""
    resource = request.match_info.route.resource
    ours = resource is not None and resource in request.app.get(DASHBOARD_RESOURCES, set())
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        if ours:
            exc.headers.update(SECURITY_HEADERS)
        raise
    if ours:
        response.headers.update(SECURITY_HEADERS)
    return response


def add_dashboard_routes(app: web.Application, desk: Desk, *, public_url: str) -> None:
    secure = urlsplit(public_url).scheme == "https"
    app[DESK] = desk
    app[SECURE] = secure
    # __Host-: the browser then insists on Secure, Path=/ and no Domain, so no sibling subdomain can plant one.
    app[COOKIE] = "__Host-tradedesk_session" if secure else "tradedesk_session"
    parts = urlsplit(public_url)
    app[ORIGINS] = frozenset({f"{parts.scheme}://{parts.netloc}".lower()})
    routes = [
        app.router.add_get("/", overview),
        app.router.add_get("/login/{token}", login_page),
        app.router.add_post("/login/{token}", login),
        app.router.add_post("/logout", logout),
        app.router.add_get("/static/dashboard.css", stylesheet),
    ]
    app[DASHBOARD_RESOURCES] = {route.resource for route in routes if route.resource is not None}


# -- sign-in ------------------------------------------------------------------------------------------------------


async def login_page(request: web.Request) -> web.Response:
    """The link from /dashboard lands here. Showing the page changes nothing: the button's POST redeems it."""
    action = html.escape(request.path, quote=True)
    body = (
        "<h1>Sign in to TradeDesk</h1>"
        "<p>This link signs you in to your dashboard. It works once, for a few minutes.</p>"
        f'<form method="post" action="{action}"><button type="submit">Sign in</button></form>'
    )
    return page("Sign in", body)


async def login(request: web.Request) -> web.StreamResponse:
    if (refused := foreign_origin(request)) is not None:
        return refused
    desk = request.app[DESK]
    try:
        session = await desk.sign_in(request.match_info["token"], request.headers.get("User-Agent"))
    except InvalidLogin:
        return page("Link expired", f"<h1>This link can't be used</h1><p>{html.escape(LOGIN_REJECTED)}</p>", 400)
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


async def logout(request: web.Request) -> web.StreamResponse:
    if (refused := foreign_origin(request)) is not None:
        return refused
    signed_in = await current_session(request)
    if signed_in is None:
        return not_signed_in()
    user, token = signed_in
    form = await request.post()
    submitted = form.get("csrf")
    if not csrf_ok(token, submitted if isinstance(submitted, str) else None):
        return page("Refused", "<h1>Refused</h1><p>This form has expired. Reload the dashboard and try again.</p>", 403)
    await request.app[DESK].sign_out(user, token)
    response = page("Signed out", f"<h1>You're signed out</h1><p>{RUN_DASHBOARD}</p>")
    response.del_cookie(request.app[COOKIE], path="/", secure=request.app[SECURE], httponly=True, samesite="Lax")
    return response


async def current_session(request: web.Request) -> tuple[UUID, str] | None:
    """The signed-in user and their session secret, or None."""
    token = request.cookies.get(request.app[COOKIE])
    if not token:
        return None
    user = await request.app[DESK].web_user(token)
    return None if user is None else (user, token)


def foreign_origin(request: web.Request) -> web.Response | None:
    """403 for a POST sent by another site's page (browsers send Origin with every form POST)."""
    origin = request.headers.get("Origin")
    if origin is None:
        return None
    own = f"{request.scheme}://{request.host}".lower()
    if origin.lower() in request.app[ORIGINS] or origin.lower() == own:
        return None
    # Not the path: a login path holds a live token.
    log.info("dashboard: refused a POST from origin %r", origin[:100])
    return page("Refused", "<h1>Refused</h1><p>That request came from another site.</p>", 403)


def not_signed_in() -> web.Response:
    return page("Sign in", f"<h1>You're not signed in</h1><p>{RUN_DASHBOARD}</p>", 401)


# -- overview -----------------------------------------------------------------------------------------------------


async def overview(request: web.Request) -> web.Response:
    signed_in = await current_session(request)
    if signed_in is None:
        return not_signed_in()
    user, token = signed_in
    try:
        view = await request.app[DESK].portfolio(user)
    except DomainError as exc:
        return page("Dashboard", f"<h1>Dashboard</h1><p>{html.escape(exc.message)}</p>", 409)
    return page("Overview", render_overview(view) + logout_form(token))


def logout_form(session_token: str) -> str:
    return (
        '<form method="post" action="/logout" class="logout">'
        f'<input type="hidden" name="csrf" value="{csrf_token(session_token)}">'
        '<button type="submit">Sign out</button></form>'
    )


def render_overview(view: PortfolioView) -> str:
    c = view.currency
    e = html.escape
    day = "—" if view.day_change is None else signed_money(view.day_change, c)
    facts = [
        ("Equity", money(view.equity, c)),
        ("Cash", money(view.cash, c)),
        ("Day change", day),
        ("Unrealized P&amp;L", signed_money(view.unrealized_pnl, c)),
        ("Realized P&amp;L", signed_money(view.realized_pnl, c)),
    ]
    summary = "".join(f"<div><dt>{label}</dt><dd>{e(value)}</dd></div>" for label, value in facts)
    notes = [f"As of {timestamp(view.as_of)}.", f"Cost basis: {e(view.cost_basis_method)}."]
    if view.simulated:
        notes.insert(0, '<strong class="sim">Simulated prices</strong> (local sim feed), not real market data.')
    if not view.complete:
        notes.append("A held symbol has no price yet: its value is left out of equity.")
    return (
        f"<h1>{e(view.name)} portfolio</h1>"
        f'<dl class="summary">{summary}</dl>'
        f'<p class="notes">{" ".join(notes)}</p>'
        f"{positions_table(view.positions, c)}"
    )


def positions_table(positions: list[PositionView], currency: str) -> str:
    if not positions:
        return "<h2>Positions</h2><p>No open positions.</p>"
    heads = ["Symbol", "Quantity", "Avg cost", "Price", "Market value", "Unrealized P&amp;L", "Realized P&amp;L"]
    head = "".join(f'<th scope="col">{h}</th>' for h in heads)
    rows = []
    for p in positions:
        price = "—" if p.price is None else number(p.price) + (' <span class="stale">stale</span>' if p.stale else "")
        cells = [
            number(p.qty),
            html.escape(money(p.avg_cost, currency)),
            price,
            "—" if p.market_value is None else html.escape(money(p.market_value, currency)),
            "—" if p.unrealized_pnl is None else html.escape(signed_money(p.unrealized_pnl, currency)),
            html.escape(signed_money(p.realized_pnl, currency)),
        ]
        tds = "".join(f'<td class="num">{cell}</td>' for cell in cells)
        rows.append(f'<tr><th scope="row">{html.escape(p.symbol)}</th>{tds}</tr>')
    return (
        '<h2 id="positions">Positions</h2><div class="scroll"><table aria-labelledby="positions">'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


# -- rendering helpers ----------------------------------------------------------------------------------------------


def money(amount: Decimal, currency: str = "USD") -> str:
    value = cents(amount)
    sign = "-" if value < 0 else ""
    if currency == "USD":
        return f"{sign}${abs(value):,.2f}"
    return f"{sign}{abs(value):,.2f} {currency}"


def signed_money(amount: Decimal, currency: str = "USD") -> str:
    return ("+" if cents(amount) > 0 else "") + money(amount, currency)


def number(value: Decimal) -> str:
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def timestamp(at: datetime) -> str:
    iso = html.escape(at.isoformat(timespec="seconds"), quote=True)
    return f'<time datetime="{iso}">{html.escape(at.strftime("%Y-%m-%d %H:%M:%S %Z"))}</time>'


def page(title: str, body: str, status: int = 200) -> web.Response:
    """A whole page around `body` (already escaped HTML)."""
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)} — TradeDesk</title>"
        '<link rel="stylesheet" href="/static/dashboard.css"></head>'
        f'<body><header><p class="brand">TradeDesk</p></header><main>{body}</main></body></html>'
    )
    return web.Response(text=text, status=status, content_type="text/html")


CSS = """
:root { color-scheme: light dark; --muted: #6b7280; --up: #15803d; --down: #b91c1c; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; line-height: 1.5; margin: 0 auto;
       max-width: 60rem; padding: 0 1rem 2rem; }
header .brand { font-weight: 700; margin: 1rem 0 0; }
h1 { font-size: 1.5rem; margin: .75rem 0; }
.summary { display: grid; grid-template-columns: repeat(auto-fit, minmax(9rem, 1fr)); gap: .75rem; margin: 0; }
.summary div { border: 1px solid #8884; border-radius: .5rem; padding: .5rem .75rem; }
.summary dt { color: var(--muted); font-size: .875rem; }
.summary dd { margin: 0; font-size: 1.25rem; font-variant-numeric: tabular-nums; }
.notes { color: var(--muted); font-size: .875rem; }
.sim { color: inherit; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; width: 100%; font-variant-numeric: tabular-nums; }
th, td { padding: .4rem .6rem; border-bottom: 1px solid #8884; text-align: left; white-space: nowrap; }
td.num { text-align: right; }
.stale { color: var(--down); font-size: .75rem; }
button { font: inherit; padding: .5rem 1.25rem; border-radius: .5rem; border: 1px solid #8888; cursor: pointer; }
.logout { margin-top: 2rem; }
"""


async def stylesheet(request: web.Request) -> web.Response:
    return web.Response(text=CSS, content_type="text/css")
