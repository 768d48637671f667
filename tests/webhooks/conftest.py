"""The dashboard on the real web app, a real Desk and database (no mock), and a browser-like client per test."""

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

from core.config import Settings
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.orders.broker import Side
from core.orders.proposals import Confirmed
from tests.bot.conftest import PRICES, build_desk
from tests.helpers import Clock
from tests.tools.conftest import set_price
from tools.agent import Agent, AgentConfig
from tools.desk import Desk, OrderDraft
from tools.planner import run_planner
from webhooks.app import create_app

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
    """The CSRF token in a page's forms."""
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page)
    assert match is not None
    return match.group(1)


@pytest.fixture
async def site(db: Database, tmp_path: Path) -> AsyncIterator[Site]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    for symbol, price in PRICES.items():
        await set_price(db, clock, symbol, price)
    desk = build_desk(db, clock)
    agent = Agent(None, AgentConfig(channel="web"), planner=run_planner)  # the offline planner, as without a key
    settings = Settings(data_dir=tmp_path / "data", web_port=0)
    app = create_app(settings, database=db, version="test", desk=desk, agent=agent)
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    async with TestClient(TestServer(app)) as client:
        yield Site(client, desk, db, clock, alice, bob)
