"""Live dashboard updates (webhooks/live.py) through the real web app, a real Desk and the real database.

Changes are made through a second Database object on the same database (another "process": the bot, the worker,
another web process), so they can reach the page only through Postgres NOTIFY. Timing is never asserted: every
wait is a bounded wait for an expected message.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

import aiohttp
import pytest
from aiohttp import ClientWebSocketResponse
from aiohttp.test_utils import TestClient, TestServer

from core.config import Settings
from core.db.database import Database, scope_connection
from core.db.identity import resolve_identity
from core.live import price_text
from core.market.bus import TickBus
from core.market.persist import PricePersister
from core.market.ticks import Tick
from core.notifications.outbox import enqueue
from core.orders.broker import OrderType, Side, TimeInForce
from core.orders.proposals import Confirmed
from tests.bot.conftest import PRICES, build_desk
from tests.conftest import PgCluster
from tests.helpers import Clock
from tests.tools.conftest import set_price
from tools.desk import Desk, OrderDraft
from webhooks.app import create_app
from webhooks.live import LiveHub

COOKIE = "tradedesk_session"
WAIT_S = 10.0


def make_render(desk: Desk) -> Callable[[UUID, frozenset[str]], Awaitable[dict[str, str]]]:
    """A small stand-in for the dashboard's renderer: each topic's element, from the real Desk in the user's scope."""

    async def render(user: UUID, topics: frozenset[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        if "portfolio" in topics:
            view = await desk.portfolio(user)
            rows = " ".join(f"{p.symbol} {price_text(p.qty)}" for p in view.positions)
            out["positions"] = f'<section id="positions">{rows}</section>'
        if "orders" in topics:
            orders = await desk.orders(user, "all")
            rows = " ".join(f"{o.symbol}:{o.status}" for o in orders)
            out["orders"] = f'<section id="orders">{rows}</section>'
        if "alerts" in topics:
            alerts = await desk.alerts(user)
            out["alerts"] = f'<section id="alerts">{" ".join(a.symbol for a in alerts)}</section>'
        if "inbox" in topics:
            async with desk.db.user_scope(user) as s:
                titles = await (await scope_connection(s)).fetch("SELECT title FROM notifications ORDER BY id")
            out["inbox"] = f'<section id="inbox">{" | ".join(r["title"] for r in titles)}</section>'
        return out

    return render


@dataclass
class Live:
    client: TestClient
    hub: LiveHub
    desk: Desk  # the web process's
    other: Desk  # another process's, on its own Database
    other_db: Database
    bus: TickBus | None
    clock: Clock
    alice: UUID
    bob: UUID

    @property
    def origin(self) -> str:
        url = self.client.make_url("/")
        return f"{url.scheme}://{url.host}:{url.port}"

    async def session(self, user: UUID) -> str:
        token = urlsplit(await self.desk.dashboard_link(user)).path.rsplit("/", 1)[1]
        return await self.desk.sign_in(token)

    async def connect(self, user: UUID | None, topics: str, origin: str | None = "own") -> ClientWebSocketResponse:
        headers = {}
        if user is not None:
            headers["Cookie"] = f"{COOKIE}={await self.session(user)}"
        if origin is not None:
            headers["Origin"] = self.origin if origin == "own" else origin
        return await self.client.ws_connect(f"/live?topics={topics}", headers=headers)

    async def buy(self, desk: Desk, user: UUID, symbol: str, qty: str, **kw: Any) -> None:
        proposal = await desk.propose(user, OrderDraft(symbol=symbol, side=Side.BUY, qty=Decimal(qty), **kw))
        assert isinstance(await desk.confirm(user, proposal.id), Confirmed)


async def next_message(
    ws: ClientWebSocketResponse, kind: str, match: Callable[[dict[str, Any]], bool] = lambda _: True
) -> dict[str, Any]:
    """The next message of `kind` that `match`es (others are skipped), within a bounded wait."""
    async with asyncio.timeout(WAIT_S):
        while True:
            msg = await ws.receive()
            assert msg.type == aiohttp.WSMsgType.TEXT, msg
            data: dict[str, Any] = json.loads(msg.data)
            if data["type"] == kind and match(data):
                return data


async def both_kinds(ws: ClientWebSocketResponse) -> list[dict[str, Any]]:
    """Messages until at least one of each kind has come (bounded wait)."""
    seen: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT_S):
        while not {"prices", "fragments"} <= {m["type"] for m in seen}:
            seen.append(json.loads((await ws.receive()).data))
    return seen


def fragment(msg: dict[str, Any], element: str) -> str:
    html: str = msg["fragments"][element]
    return html


def has(element: str, text: str | None = None) -> Callable[[dict[str, Any]], bool]:
    return lambda m: element in m["fragments"] and (text is None or text in m["fragments"][element])


@contextlib.asynccontextmanager
async def live_site(db: Database, db_url: str, tmp_path: Path, *, with_bus: bool, **hub_kw: Any) -> AsyncIterator[Live]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    for symbol, price in PRICES.items():
        await set_price(db, clock, symbol, price)
    desk = build_desk(db, clock)
    other_db = Database(db_url, pool_size=2, application_name="tradedesk-other")
    other = build_desk(other_db, clock)
    bus = TickBus() if with_bus else None
    hub_kw.setdefault("coalesce_s", 0.02)
    hub = LiveHub(db, render=make_render(desk), bus=bus, held_symbols=desk.held_symbols, **hub_kw)
    app = create_app(Settings(data_dir=tmp_path / "data", web_port=0), database=db, version="test", desk=desk, live=hub)
    alice = await resolve_identity(db, console_handle="alice")
    bob = await resolve_identity(db, console_handle="bob")
    try:
        async with TestClient(TestServer(app)) as client:
            await hub.wait_listening()
            yield Live(client, hub, desk, other, other_db, bus, clock, alice, bob)
    finally:
        await other_db.dispose()


@pytest.fixture
async def live(db: Database, db_url: str, tmp_path: Path) -> AsyncIterator[Live]:
    async with live_site(db, db_url, tmp_path, with_bus=True) as site:
        yield site


async def handshake_status(live: Live, user: UUID | None, topics: str, origin: str | None = "own") -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await live.connect(user, topics, origin)
    return refused.value.status


async def test_the_handshake_is_refused_without_a_session_from_another_origin_and_for_unknown_topics(
    live: Live,
) -> None:
    assert await handshake_status(live, None, "orders") == 401
    assert await handshake_status(live, live.alice, "orders", origin="https://evil.example") == 403
    assert await handshake_status(live, live.alice, "orders", origin=None) == 403
    assert await handshake_status(live, live.alice, "orders,secrets") == 400
    assert await handshake_status(live, live.alice, "") == 400
    resp = await live.client.get(
        "/live?topics=orders,bogus",
        headers={"Cookie": f"{COOKIE}={await live.session(live.alice)}", "Origin": live.origin},
    )
    assert resp.status == 400 and "bogus" in await resp.text()
    assert live.hub.sockets() == 0


async def test_sockets_per_user_are_capped(db: Database, db_url: str, tmp_path: Path) -> None:
    async with live_site(db, db_url, tmp_path, with_bus=True, max_sockets_per_user=2) as site:
        first = await site.connect(site.alice, "orders")
        second = await site.connect(site.alice, "orders")
        assert await handshake_status(site, site.alice, "orders") == 429
        bob = await site.connect(site.bob, "orders")  # the cap is per user
        await next_message(bob, "fragments")
        for ws in (first, second, bob):
            await ws.close()


async def test_a_socket_gets_a_snapshot_of_its_topics_and_the_prices_of_held_symbols_on_connect(live: Live) -> None:
    await live.buy(live.desk, live.alice, "AAPL", "10")
    ws = await live.connect(live.alice, "portfolio,orders")
    snapshot = await next_message(ws, "fragments")
    assert fragment(snapshot, "positions") == '<section id="positions">AAPL 10</section>'
    assert "AAPL:filled" in fragment(snapshot, "orders")
    prices = await next_message(ws, "prices")
    assert prices["prices"] == {"AAPL": {"price": "200", "at": live.clock().isoformat()}}
    await ws.close()


async def test_orders_confirmed_and_canceled_in_another_process_reach_the_page(live: Live) -> None:
    ws = await live.connect(live.alice, "portfolio,orders")
    await next_message(ws, "fragments")
    limit = {"type": OrderType.LIMIT, "limit_price": Decimal("150"), "tif": TimeInForce.GTC}
    await live.buy(live.other, live.alice, "AAPL", "3", **limit)
    pushed = await next_message(ws, "fragments", has("orders", "AAPL:new"))
    assert "positions" in pushed["fragments"]  # both topics this socket follows

    [order] = await live.other.orders(live.alice, "open")
    await live.other.cancel_order(live.alice, order.id)
    await next_message(ws, "fragments", has("orders", "AAPL:canceled"))

    await live.buy(live.other, live.alice, "MSFT", "2")  # a market order fills at once
    await next_message(ws, "fragments", has("positions", "MSFT 2"))
    await ws.close()


async def test_alerts_created_and_deleted_elsewhere_reach_the_page(live: Live) -> None:
    ws = await live.connect(live.alice, "alerts")
    assert fragment(await next_message(ws, "fragments"), "alerts") == '<section id="alerts"></section>'
    alert = await live.other.add_alert(live.alice, "TSLA", "above", Decimal("300"))
    await next_message(ws, "fragments", has("alerts", "TSLA"))
    await live.other.remove_alert(live.alice, alert.id)
    deleted = await next_message(ws, "fragments", has("alerts"))
    assert fragment(deleted, "alerts") == '<section id="alerts"></section>'
    await ws.close()


async def test_a_notification_written_to_the_outbox_reaches_the_inbox(live: Live) -> None:
    ws = await live.connect(live.alice, "inbox")
    await next_message(ws, "fragments")
    async with live.other_db.system_scope("test.outbox") as s:
        await enqueue(s, live.alice, "system", "test:1", "Hello from the worker", "A body.")
    await next_message(ws, "fragments", has("inbox", "Hello from the worker"))
    await ws.close()


async def test_events_close_together_render_once(live: Live) -> None:
    ws = await live.connect(live.alice, "orders,alerts")
    await next_message(ws, "fragments")
    before = live.hub.renders
    for _ in range(5):
        live.hub.mark(live.alice, {"orders"})
    live.hub.mark(live.alice, {"alerts"})
    both = await next_message(ws, "fragments")
    assert set(both["fragments"]) == {"orders", "alerts"}
    assert live.hub.renders == before + 1
    await ws.close()


async def test_ticks_go_only_to_sockets_whose_user_holds_the_symbol_and_never_another_users_fragments(
    live: Live,
) -> None:
    assert live.bus is not None
    await live.buy(live.desk, live.alice, "AAPL", "1")
    await live.buy(live.desk, live.bob, "MSFT", "4")
    alice = await live.connect(live.alice, "portfolio")
    bob = await live.connect(live.bob, "portfolio")
    for ws in (alice, bob):
        await next_message(ws, "fragments")
        await next_message(ws, "prices")

    at = live.clock()
    live.bus.publish(Tick("AAPL", Decimal("201.50"), Decimal(1), at, "sim"))
    live.bus.publish(Tick("MSFT", Decimal("399.25"), Decimal(1), at, "sim"))
    # Each gets its own price and its own portfolio re-render (the price moved), in either order; nothing else.
    for ws, symbol, price, rows in ((alice, "AAPL", "201.5", "AAPL 1"), (bob, "MSFT", "399.25", "MSFT 4")):
        seen = await both_kinds(ws)
        other = "MSFT" if symbol == "AAPL" else "AAPL"
        assert all(other not in json.dumps(m) for m in seen)
        assert next(m for m in seen if m["type"] == "prices")["prices"] == {
            symbol: {"price": price, "at": at.isoformat()}
        }
        assert fragment(next(m for m in seen if m["type"] == "fragments"), "positions") == (
            f'<section id="positions">{rows}</section>'
        )
    for ws in (alice, bob):
        await ws.close()


async def test_prices_coalesce_per_socket(db: Database, db_url: str, tmp_path: Path) -> None:
    async with live_site(db, db_url, tmp_path, with_bus=True, price_window_s=0.5) as site:
        assert site.bus is not None
        await site.buy(site.desk, site.alice, "AAPL", "1")
        ws = await site.connect(site.alice, "orders")
        await next_message(ws, "fragments")
        await next_message(ws, "prices")  # the snapshot opens the window
        at = site.clock()
        for cents in range(1, 6):
            site.bus.publish(Tick("AAPL", Decimal(f"200.0{cents}"), Decimal(1), at, "sim"))
        # One message at the end of the window, with the newest price only.
        got = await next_message(ws, "prices")
        assert got["prices"]["AAPL"]["price"] == "200.05"
        await ws.close()


async def test_a_reconnected_listener_resends_every_socket_a_snapshot(live: Live, pg: PgCluster, db_name: str) -> None:
    ws = await live.connect(live.alice, "inbox")
    await next_message(ws, "fragments")
    assert live.hub.changes is not None
    # A change whose NOTIFY the hub never gets (as if committed while it was away): only a resync can show it.
    async with live.other_db.system_scope("test.outbox") as s:
        await (await scope_connection(s)).execute(
            "INSERT INTO notifications (user_id, kind, dedupe_key, title, body) VALUES ($1, 'system', 'x', $2, 'b')",
            live.alice,
            "Missed while away",
        )
    admin = await pg.admin()
    try:
        killed = await admin.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = $1 AND query LIKE 'LISTEN %tradedesk_live%'",
            db_name,
        )
    finally:
        await admin.close()
    assert killed == 1
    await next_message(ws, "fragments", has("inbox", "Missed while away"))
    assert live.hub.changes.connections == 2
    await ws.close()


async def stuck_socket(live: Live, user: UUID, topics: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A websocket client that completes the handshake and then never reads (a frozen tab, a dead network)."""
    url = live.client.make_url("/")
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, (url.host, url.port))
    reader, writer = await asyncio.open_connection(sock=sock)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /live?topics={topics} HTTP/1.1\r\nHost: {url.host}:{url.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Origin: {live.origin}\r\nCookie: {COOKIE}={await live.session(user)}\r\n\r\n"
        ).encode()
    )
    head = await reader.readuntil(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    return reader, writer


async def test_a_stuck_client_is_dropped_without_holding_up_the_others(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    async with live_site(db, db_url, tmp_path, with_bus=True, queue_size=4, coalesce_s=0.001) as site:
        big = "x" * 200_000

        async def heavy(user: UUID, topics: frozenset[str]) -> dict[str, str]:
            return {"orders": f'<section id="orders">{user if user == site.bob else big}</section>'}

        site.hub.render = heavy
        bob = await site.connect(site.bob, "orders")
        await next_message(bob, "fragments")
        _reader, writer = await stuck_socket(site, site.alice, "orders")
        async with asyncio.timeout(WAIT_S):
            while site.hub.sockets(site.alice) == 0:  # noqa: ASYNC110 -- a bounded wait for the handshake's end
                await asyncio.sleep(0.01)
            while site.hub.dropped == 0:
                site.hub.mark(site.alice, {"orders"})
                site.hub.mark(site.bob, {"orders"})
                await next_message(bob, "fragments", has("orders", str(site.bob)))  # Bob keeps getting his
        assert site.hub.sockets(site.alice) == 0
        site.hub.mark(site.bob, {"orders"})
        await next_message(bob, "fragments", has("orders", str(site.bob)))
        writer.close()
        await bob.close()


async def test_prices_the_persister_publishes_reach_a_hub_without_a_bus(
    db: Database, db_url: str, tmp_path: Path
) -> None:
    async with live_site(db, db_url, tmp_path, with_bus=False) as site:
        assert site.hub.prices is not None and site.hub.prices.connected.is_set()
        await site.buy(site.desk, site.alice, "AAPL", "2")
        ws = await site.connect(site.alice, "portfolio")
        await next_message(ws, "fragments")
        assert (await next_message(ws, "prices"))["prices"]["AAPL"]["price"] == "200"
        # The worker's persister, in another process with its own bus.
        persister = PricePersister(site.other_db, TickBus())
        at = datetime.now(UTC)
        persister.add(Tick("AAPL", Decimal("205.125"), Decimal(1), at, "sim"))
        persister.add(Tick("TSLA", Decimal("260"), Decimal(1), at, "sim"))  # nobody here holds TSLA
        assert await persister.flush()
        got = await next_message(ws, "prices")
        assert got["prices"] == {"AAPL": {"price": "205.125", "at": at.isoformat()}}
        await ws.close()


async def test_live_js_is_served_and_dashboard_pages_allow_only_same_origin_scripts(live: Live) -> None:
    resp = await live.client.get("/static/live.js")
    body = await resp.text()
    assert resp.status == 200 and resp.content_type == "application/javascript"
    assert "/live?topics=" in body and "outerHTML" in body and "setInterval" not in body
    page = await live.client.get("/", headers={"Cookie": f"{COOKIE}={await live.session(live.alice)}"})
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp


async def test_a_render_overtaken_by_a_newer_change_is_followed_by_a_fresh_one(live: Live) -> None:
    gate = asyncio.Event()
    state = {"version": 1}
    calls = 0

    async def slow_first(user: UUID, topics: frozenset[str]) -> dict[str, str]:
        nonlocal calls
        calls += 1
        version = state["version"]  # what the database said when this render read it
        if calls == 1:
            await gate.wait()
        return {"orders": f'<section id="orders">v{version}</section>'}

    live.hub.render = slow_first
    ws = await live.connect(live.alice, "orders")
    async with asyncio.timeout(WAIT_S):
        while calls == 0:  # noqa: ASYNC110 -- a bounded wait for the snapshot's render to start
            await asyncio.sleep(0.01)
    state["version"] = 2
    live.hub.mark(live.alice, {"orders"})
    await next_message(ws, "fragments", has("orders", "v2"))  # the change's own refresh, sent first
    gate.set()
    await next_message(ws, "fragments", has("orders", "v1"))  # the snapshot, late and stale
    await next_message(ws, "fragments", has("orders", "v2"))  # and so it is redone
    await ws.close()
