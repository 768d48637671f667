"""The dashboard's sign-in and overview, through the real web app on a real Desk and database (no mock).

A link from Desk.dashboard_link (what /dashboard replies with) is opened with GET (which must not use it up: chat
apps fetch links to preview them), redeemed with POST, and the cookie then shows that user's own portfolio only.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit
from uuid import UUID

import pytest
from aiohttp import ClientResponse
from aiohttp.test_utils import TestClient, TestServer

from core.auth.service import digest
from core.config import Settings
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.orders.broker import Side
from core.orders.proposals import Confirmed
from tests.bot.conftest import PRICES, build_desk
from tests.helpers import Clock
from tests.tools.conftest import set_price
from tools.desk import Desk, OrderDraft
from webhooks.app import create_app
from webhooks.dashboard import money, signed_money

COOKIE = "tradedesk_session"


@dataclass
class Site:
    client: TestClient
    desk: Desk
    db: Database
    clock: Clock
    alice: UUID
    bob: UUID

    async def link_path(self, user: UUID) -> str:
        link = await self.desk.dashboard_link(user)
        assert link.startswith("http://127.0.0.1:8080/login/")
        return urlsplit(link).path

    async def sign_in(self, user: UUID) -> str:
        """The session secret a browser would hold after following the link and pressing Sign in."""
        path = await self.link_path(user)
        page = await self.client.get(path)
        assert page.status == 200
        resp = await self.client.post(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/"
        self.client.session.cookie_jar.clear()  # each request below says explicitly whose cookie it sends
        return session_cookie(resp)[0]

    async def get(self, path: str, session: str | None = None) -> ClientResponse:
        headers = {"Cookie": f"{COOKIE}={session}"} if session else {}
        return await self.client.get(path, headers=headers, allow_redirects=False)

    async def post(
        self, path: str, session: str | None = None, data: dict[str, str] | None = None, **headers: str
    ) -> ClientResponse:
        if session:
            headers["Cookie"] = f"{COOKIE}={session}"
        return await self.client.post(path, data=data or {}, headers=headers, allow_redirects=False)

    async def sessions(self) -> int:
        async with self.db.system_scope("test.count") as s:
            n: int = await (await raw_connection(s)).fetchval("SELECT count(*) FROM web_sessions")
        return n

    async def buy(self, user: UUID, symbol: str, qty: str) -> None:
        proposal = await self.desk.propose(user, OrderDraft(symbol=symbol, side=Side.BUY, qty=Decimal(qty)))
        assert isinstance(await self.desk.confirm(user, proposal.id), Confirmed)


def session_cookie(resp: ClientResponse) -> tuple[str, str]:
    """(value, the whole Set-Cookie header) of the session cookie the response sets."""
    [header] = [h for h in resp.headers.getall("Set-Cookie", []) if h.startswith(("tradedesk_session=", "__Host-"))]
    value = header.split(";", 1)[0].split("=", 1)[1]
    return value, header


def csrf_of(page: str) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def site(db: Database, tmp_path: Path) -> AsyncIterator[Site]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    for symbol, price in PRICES.items():
        await set_price(db, clock, symbol, price)
    desk = build_desk(db, clock)
    app = create_app(Settings(data_dir=tmp_path / "data", web_port=0), database=db, version="test", desk=desk)
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    async with TestClient(TestServer(app)) as client:
        yield Site(client, desk, db, clock, alice, bob)


async def test_sign_in_get_shows_a_button_post_sets_the_cookie_and_the_overview_shows_the_users_numbers(
    site: Site,
) -> None:
    await site.buy(site.alice, "AAPL", "10")
    path = await site.link_path(site.alice)

    for _ in range(2):  # a link preview, then the user: neither uses the link up
        page = await site.client.get(path)
        text = await page.text()
        assert page.status == 200 and "Set-Cookie" not in page.headers
        assert f'<form method="post" action="{path}">' in text and ">Sign in</button>" in text
    async with site.db.system_scope("test.read") as s:
        used = await (await raw_connection(s)).fetchval(
            "SELECT used_at FROM login_tokens WHERE token_hash = $1", digest(path.rsplit("/", 1)[1])
        )
    assert used is None and await site.sessions() == 0

    resp = await site.client.post(path, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/"
    session, header = session_cookie(resp)
    flags = {part.strip().lower() for part in header.split(";")[1:]}
    assert {"httponly", "samesite=lax", "path=/", "max-age=604800"} <= flags
    assert "secure" not in flags  # TRADEDESK_PUBLIC_URL is http here
    async with site.db.system_scope("test.read") as s:  # only the hash is stored
        stored = await (await raw_connection(s)).fetch("SELECT session_hash, user_id FROM web_sessions")
    assert [(r["session_hash"], r["user_id"]) for r in stored] == [(digest(session), site.alice)]

    overview = await site.client.get("/")  # the browser's cookie jar sends the cookie back
    text = await overview.text()
    assert overview.status == 200
    view = await site.desk.portfolio(site.alice)
    for value in (money(view.equity), money(view.cash), signed_money(view.unrealized_pnl)):
        assert value in text
    assert "Day change" in text and "Realized P&amp;L" in text
    assert '<th scope="row">AAPL</th><td class="num">10</td>' in text
    assert '<th scope="col">Symbol</th>' in text and "<main>" in text
    assert "Simulated prices" in text and "average cost (fees included)" in text and "<time datetime=" in text
    assert "<script" not in text and "style=" not in text


async def test_the_cookie_is_secure_and_host_prefixed_behind_https(db: Database, tmp_path: Path) -> None:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    desk = build_desk(db, clock)
    settings = Settings(data_dir=tmp_path / "data", web_port=0, public_url="https://desk.example.com")
    app = create_app(settings, database=db, version="test", desk=desk)
    user = await resolve_identity(db, console_handle="carol")
    async with TestClient(TestServer(app)) as client:
        path = urlsplit(await desk.dashboard_link(user)).path
        resp = await client.post(path, allow_redirects=False)
        assert resp.status == 303
        _, header = session_cookie(resp)
    assert header.startswith("__Host-tradedesk_session=")
    assert "secure" in {part.strip().lower() for part in header.split(";")}


async def test_expired_reused_and_forged_links_are_refused_and_open_no_session(site: Site) -> None:
    expired = await site.link_path(site.alice)
    site.clock.advance(minutes=11)
    resp = await site.client.post(expired, allow_redirects=False)
    assert resp.status == 400 and "Run /dashboard in Discord" in await resp.text()
    assert "Set-Cookie" not in resp.headers and await site.sessions() == 0
    async with site.db.system_scope("test.read") as s:  # a refused redeem writes nothing
        assert (
            await (await raw_connection(s)).fetchval("SELECT count(*) FROM login_tokens WHERE used_at IS NOT NULL") == 0
        )

    reused = await site.link_path(site.alice)
    assert (await site.client.post(reused, allow_redirects=False)).status == 303
    site.client.session.cookie_jar.clear()
    again = await site.client.post(reused, allow_redirects=False)
    assert again.status == 400 and "Set-Cookie" not in again.headers
    assert await site.sessions() == 1

    for forged in ("/login/forged-token", "/login/" + "A" * 43, "/login/" + "x" * 500):
        resp = await site.client.post(forged, allow_redirects=False)
        assert resp.status == 400 and "Set-Cookie" not in resp.headers
    assert await site.sessions() == 1


async def test_each_user_sees_only_their_own_portfolio(site: Site) -> None:
    await site.buy(site.alice, "AAPL", "3")
    await site.buy(site.bob, "MSFT", "2")
    alice, bob = await site.sign_in(site.alice), await site.sign_in(site.bob)

    alice_page = await (await site.get("/", alice)).text()
    bob_page = await (await site.get("/", bob)).text()
    assert '<th scope="row">AAPL</th>' in alice_page and "MSFT" not in alice_page
    assert '<th scope="row">MSFT</th>' in bob_page and "AAPL" not in bob_page
    assert money((await site.desk.portfolio(site.alice)).cash) in alice_page
    assert money((await site.desk.portfolio(site.bob)).cash) in bob_page


async def test_the_overview_needs_a_live_session(site: Site) -> None:
    resp = await site.get("/")
    assert resp.status == 401 and "/dashboard" in await resp.text()
    assert (await site.get("/", "not-a-session")).status == 401

    session = await site.sign_in(site.alice)
    assert (await site.get("/", session)).status == 200
    site.clock.advance(days=7, seconds=1)
    assert (await site.get("/", session)).status == 401


async def test_last_seen_is_written_at_most_once_a_minute(site: Site) -> None:
    session = await site.sign_in(site.alice)

    async def last_seen() -> datetime:
        async with site.db.system_scope("test.read") as s:
            at: datetime = await (await raw_connection(s)).fetchval("SELECT last_seen_at FROM web_sessions")
        return at

    signed_in_at = await last_seen()
    site.clock.advance(seconds=30)
    assert (await site.get("/", session)).status == 200
    assert await last_seen() == signed_in_at
    site.clock.advance(seconds=40)
    assert (await site.get("/", session)).status == 200
    assert await last_seen() == site.clock()


async def test_logout_needs_the_csrf_token_and_ends_the_session(site: Site) -> None:
    session = await site.sign_in(site.alice)
    csrf = csrf_of(await (await site.get("/", session)).text())

    assert (await site.post("/logout", session)).status == 403
    assert (await site.post("/logout", session, {"csrf": "0" * 64})).status == 403
    other = await site.sign_in(site.bob)  # another session's token is no good either
    assert (await site.post("/logout", other, {"csrf": csrf})).status == 403
    cross_site = await site.post("/logout", session, {"csrf": csrf}, Origin="https://evil.example")
    assert cross_site.status == 403
    assert (await site.get("/", session)).status == 200 and await site.sessions() == 2

    resp = await site.post("/logout", session, {"csrf": csrf})
    assert resp.status == 200 and "signed out" in await resp.text()
    assert session_cookie(resp)[0] in ("", '""')  # the browser drops the cookie
    assert (await site.get("/", session)).status == 401
    assert await site.sessions() == 1  # bob's session lives on
    assert (await site.get("/", other)).status == 200


async def test_a_login_post_from_another_site_is_refused(site: Site) -> None:
    path = await site.link_path(site.alice)
    resp = await site.post(path, Origin="https://evil.example")
    assert resp.status == 403 and await site.sessions() == 0
    ok = await site.post(path, Origin="http://127.0.0.1:8080")
    assert ok.status == 303


async def test_every_dashboard_response_carries_the_security_headers(site: Site) -> None:
    session = await site.sign_in(site.alice)
    login = await site.link_path(site.alice)
    responses = [
        await site.get("/", session),
        await site.get("/"),
        await site.get(login),
        await site.post("/login/forged"),
        await site.post("/logout", session),
        await site.get("/static/dashboard.css"),
        await site.post(login),
    ]
    assert [r.status for r in responses] == [200, 401, 200, 400, 403, 200, 303]
    for resp in responses:
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe-inline" not in csp
        assert resp.headers["X-Frame-Options"] == "DENY"
        assert resp.headers["Referrer-Policy"] == "no-referrer"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert resp.headers["Cache-Control"] == "no-store"
    health = await site.get("/healthz")
    assert "Content-Security-Policy" not in health.headers  # other routes keep their own headers
