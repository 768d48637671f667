"""Live dashboard updates: one websocket per page (GET /live?topics=...), server push only.

A page names its topics (a subset of portfolio, orders, alerts, inbox, plan) in `<body data-topics>`;
/static/live.js opens `/live?topics=a,b` and applies two kinds of JSON message:

- `{"type": "fragments", "fragments": {"<element id>": "<html>"}}`: server-rendered, escaped HTML that replaces
  those elements. The hub doesn't know HTML: the dashboard injects `render(user, topics) -> {id: html}`, which runs
  in the user's own user_scope (through the Desk) like every dashboard request.
- `{"type": "prices", "prices": {"AAPL": {"price": "190.12", "at": "<iso>"}}}`: last prices of the symbols the
  user holds, as strings (the page never does money math; derived values come with a re-rendered "portfolio").

Where changes come from (the cross-process choice, DESIGN section 7): every role may commit a change a page shows
(the bot confirms an order, the worker fills it or fires an alert, another web process deletes an alert, the
Stripe webhook changes a plan), so the hub follows Postgres, not its own process. Writers NOTIFY
`tradedesk_live` with `<user uuid> <topic>...` (core/live.py), delivered exactly when the change commits: user
actions inside their own transaction (Desk.confirm, cancel_order, add_alert, remove_alert; an outbox row; a plan
change), and the worker once per committed batch of fills or alert fires with the distinct users, never per tick and
never inside place_order or the fill functions (the order benchmark's hot path is untouched). The payload names the
user, so the hub routes without reading any table across tenants (no system_scope in the web role), and re-renders
through the user's own scope: a payload carries no data, so a forged or stale one can only cause a harmless refresh.
Several events for one user within `coalesce_s` render once. A ChangeListener LISTENs and, on every (re)connect,
re-sends fresh fragments to every socket (notifications sent while it was away are lost); a socket that connects
gets a fresh snapshot for the same reason.

Prices: with the worker's TickBus in this process (`tradedesk run` holding the worker lease) the hub subscribes to
it; otherwise it LISTENs on `tradedesk_prices`, which the worker's PricePersister publishes after each throttled
flush (so at most about once a second). Each socket gets only its user's held symbols, the first update at once and
then at most one message per `price_window_s`; a held symbol whose price moved re-renders the user's "portfolio"
at most once per `portfolio_every_s`.

Safety: no cookie, 401; an Origin other than the dashboard's own, 403 (browsers send cookies on cross-site
websocket handshakes: without this check any site could read a signed-in user's live data); unknown topics, 400;
more than `max_sockets_per_user` sockets, 429. Each socket has a bounded send queue: a client that doesn't read
fast enough is disconnected (it reconnects and gets a fresh snapshot), never allowed to grow memory or slow others.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import Any
from uuid import UUID

from aiohttp import WSCloseCode, WSMsgType, web
from sqlalchemy import text

from core.db.database import DATABASE_ERRORS, Database
from core.db.listen import ChangeListener
from core.live import LIVE, PRICES, TOPICS, parse_live, parse_prices, price_entry
from core.market.bus import Subscription, TickBus

log = logging.getLogger(__name__)

Render = Callable[[UUID, frozenset[str]], Awaitable[dict[str, str]]]
HeldSymbols = Callable[[UUID], Awaitable[set[str]]]
Authenticate = Callable[[web.Request], Awaitable[UUID | None]]
PriceEntry = dict[str, str]

_LAST_PRICES = text("SELECT symbol, price, ts FROM last_prices WHERE symbol = ANY(:symbols)")


class Client:
    """One connected page."""

    def __init__(
        self, hub: LiveHub, ws: web.WebSocketResponse, request: web.Request, user: UUID, topics: frozenset[str]
    ):
        self.ws = ws
        self.request = request
        self.user = user
        self.topics = topics
        self.symbols: frozenset[str] = frozenset()
        self.queue: asyncio.Queue[str] = asyncio.Queue(hub.queue_size)
        self.closed = False
        self.pending_prices: dict[str, PriceEntry] = {}
        self.prices_sent_at = float("-inf")
        self.prices_timer: asyncio.TimerHandle | None = None
        self.writer: asyncio.Task[None] | None = None


def _topics(raw: str | None) -> frozenset[str]:
    if not raw:
        raise web.HTTPBadRequest(
            text=f"Say which topics to follow: ?topics= one or more of {', '.join(sorted(TOPICS))}."
        )
    names = frozenset(t.strip() for t in raw.split(",") if t.strip())
    unknown = names - TOPICS
    if unknown or not names:
        raise web.HTTPBadRequest(
            text=f"Unknown topic(s): {', '.join(sorted(unknown)) or '(none)'}; use {', '.join(sorted(TOPICS))}."
        )
    return names


class LiveHub:
    """The sockets of this web process and what feeds them. `await start()`, then `await stop()`."""

    def __init__(
        self,
        database: Database,
        *,
        render: Render,
        bus: TickBus | None,
        held_symbols: HeldSymbols,
        max_sockets_per_user: int = 20,
        queue_size: int = 64,
        coalesce_s: float = 0.1,
        price_window_s: float = 0.05,
        portfolio_every_s: float = 1.0,
        heartbeat_s: float = 25.0,
        render_concurrency: int = 8,
    ) -> None:
        self.database = database
        self.render = render
        self.bus = bus
        self.held_symbols = held_symbols
        self.max_sockets_per_user = max_sockets_per_user
        self.queue_size = queue_size
        self.coalesce_s = coalesce_s
        self.price_window_s = price_window_s
        self.portfolio_every_s = portfolio_every_s
        self.heartbeat_s = heartbeat_s
        self.dropped = 0  # sockets disconnected for not reading
        self.renders = 0
        self._render_slots = asyncio.Semaphore(render_concurrency)
        self._render_queue = 0  # renders waiting for a slot
        self.shed = 0  # price-driven portfolio re-renders put off because renders were queued
        self._clients: dict[UUID, set[Client]] = {}
        self._by_symbol: dict[str, set[Client]] = {}
        self._prices: dict[str, PriceEntry] = {}
        self._dirty: dict[UUID, set[str]] = {}
        self._events: dict[UUID, int] = {}  # per user, events marked so far: a render overtaken by one is redone
        self._dirty_timers: dict[UUID, asyncio.TimerHandle] = {}
        self._portfolio_at: dict[UUID, float] = {}
        self._portfolio_timers: dict[UUID, asyncio.TimerHandle] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._ticks: Subscription | None = None
        self.changes: ChangeListener | None = None
        self.prices: ChangeListener | None = None

    # -- lifecycle ------------------------------------------------------------------------------------------------

    async def start(self) -> None:
        self.changes = ChangeListener(
            self.database, name="live", channel=LIVE, on_change=self._on_live, on_connect=self._resync
        )
        self._loops.append(asyncio.create_task(self.changes.run(), name="live.changes"))
        if self.bus is not None:
            self._ticks = self.bus.subscribe("live", maxsize=10_000)
            self._loops.append(asyncio.create_task(self._consume_ticks(self._ticks), name="live.ticks"))
        else:
            self.prices = ChangeListener(
                self.database, name="live.prices", channel=PRICES, on_change=self._on_prices_payload,
                on_connect=self._reload_prices,
            )  # fmt: skip
            self._loops.append(asyncio.create_task(self.prices.run(), name="live.prices"))

    async def wait_listening(self, within_s: float = 10.0) -> None:
        """Until the listeners are connected (tests, and a bench that must not miss the first event)."""
        for listener in (self.changes, self.prices):
            if listener is not None:
                await asyncio.wait_for(listener.connected.wait(), within_s)

    async def close_sockets(self, _app: web.Application | None = None) -> None:
        """Close every page's socket (at shutdown: open websocket handlers would otherwise hold the server)."""
        clients = [c for group in self._clients.values() for c in group]
        for client in clients:
            self._detach(client)
        await asyncio.gather(
            *(asyncio.wait_for(c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"restarting"), 2) for c in clients),
            return_exceptions=True,
        )

    async def stop(self) -> None:
        await self.close_sockets()
        if self._ticks is not None:
            self._ticks.close()
            self._ticks = None
        for handle in [*self._dirty_timers.values(), *self._portfolio_timers.values()]:
            handle.cancel()
        self._dirty_timers.clear()
        self._portfolio_timers.clear()
        tasks = [*self._loops, *self._tasks]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loops.clear()
        self._tasks.clear()

    async def context(self, _app: web.Application) -> AsyncIterator[None]:
        """For `app.cleanup_ctx`."""
        await self.start()
        yield
        await self.stop()

    def sockets(self, user: UUID | None = None) -> int:
        if user is not None:
            return len(self._clients.get(user, ()))
        return sum(len(group) for group in self._clients.values())

    # -- sockets --------------------------------------------------------------------------------------------------

    async def serve(self, request: web.Request, user: UUID, topics: frozenset[str]) -> web.WebSocketResponse:
        if self.sockets(user) >= self.max_sockets_per_user:
            raise web.HTTPTooManyRequests(text="Too many open dashboard pages; close some and reload.")
        ws = web.WebSocketResponse(heartbeat=self.heartbeat_s, max_msg_size=4096)
        await ws.prepare(request)
        client = Client(self, ws, request, user, topics)
        client.writer = asyncio.create_task(self._write(client), name="live.write")
        self._clients.setdefault(user, set()).add(client)
        try:
            await self._welcome(client)
            async for msg in ws:  # the page sends nothing we act on; this waits for the close
                if msg.type == WSMsgType.ERROR:
                    break
        finally:
            self._detach(client)
        return ws

    async def _welcome(self, client: Client) -> None:
        """A fresh snapshot on every connect: it covers whatever happened while the page was away."""
        try:
            held = await self.held_symbols(client.user)
        except DATABASE_ERRORS as exc:
            log.warning("live: could not read held symbols (%s)", exc)
            held = set()
        self._index(client, frozenset(held))
        seen = self._events.get(client.user, 0)
        fragments = await self._render(client.user, client.topics)
        if fragments:
            self._send(client, _fragments_message(fragments))
        if self._events.get(client.user, 0) != seen:
            # A change came in while this rendered: its own refresh may have been sent first, so send again.
            self.mark(client.user, client.topics)
        prices = await self._current_prices(client.symbols)
        if prices:
            self._send(client, _prices_message(prices))
            client.prices_sent_at = time.monotonic()

    def _index(self, client: Client, symbols: frozenset[str]) -> None:
        for symbol in client.symbols - symbols:
            group = self._by_symbol.get(symbol)
            if group is not None:
                group.discard(client)
                if not group:
                    del self._by_symbol[symbol]
        for symbol in symbols - client.symbols:
            self._by_symbol.setdefault(symbol, set()).add(client)
        client.symbols = symbols

    def _detach(self, client: Client) -> None:
        if client.closed:
            return
        client.closed = True
        self._index(client, frozenset())
        group = self._clients.get(client.user)
        if group is not None:
            group.discard(client)
            if not group:
                del self._clients[client.user]
                self._dirty.pop(client.user, None)
                self._events.pop(client.user, None)
                self._portfolio_at.pop(client.user, None)
                for timers in (self._dirty_timers, self._portfolio_timers):
                    if (handle := timers.pop(client.user, None)) is not None:
                        handle.cancel()
        if client.prices_timer is not None:
            client.prices_timer.cancel()
        if client.writer is not None and client.writer is not asyncio.current_task():
            client.writer.cancel()

    def _send(self, client: Client, message: str) -> None:
        """Queue a message; a client whose queue is full is too slow and is disconnected."""
        if client.closed:
            return
        try:
            client.queue.put_nowait(message)
        except asyncio.QueueFull:
            self._drop(client)

    def _drop(self, client: Client) -> None:
        self.dropped += 1
        log.info("live: dropping a socket that doesn't keep up (%d messages queued)", client.queue.qsize())
        self._detach(client)
        transport = client.request.transport
        if transport is not None:
            transport.abort()  # no close handshake: it would wait on the same stuck client

    async def _write(self, client: Client) -> None:
        try:
            while True:
                message = await client.queue.get()
                await client.ws.send_str(message)
        except (ConnectionError, RuntimeError):
            self._detach(client)

    # -- user events ----------------------------------------------------------------------------------------------

    async def _on_live(self, payload: str) -> None:
        for user, topics in parse_live(payload).items():
            self.mark(user, topics)

    def mark(self, user: UUID, topics: Iterable[str]) -> None:
        """Re-render these topics for the user's sockets soon (events within `coalesce_s` render once)."""
        if user not in self._clients:
            return
        self._events[user] = self._events.get(user, 0) + 1
        self._dirty.setdefault(user, set()).update(topics)
        if user not in self._dirty_timers:
            loop = asyncio.get_running_loop()
            self._dirty_timers[user] = loop.call_later(self.coalesce_s, self._spawn, self._refresh(user))

    async def _refresh(self, user: UUID) -> None:
        self._dirty_timers.pop(user, None)
        topics = self._dirty.pop(user, set())
        clients = [c for c in self._clients.get(user, ()) if c.topics & topics]
        if "portfolio" in topics or "orders" in topics:
            # A fill may have opened or closed a position: follow the user's held symbols.
            try:
                held = frozenset(await self.held_symbols(user))
            except DATABASE_ERRORS as exc:
                log.warning("live: could not read held symbols (%s)", exc)
            else:
                for client in self._clients.get(user, ()):
                    self._index(client, held)
        if "portfolio" in topics:
            self._portfolio_at[user] = time.monotonic()
        groups: dict[frozenset[str], list[Client]] = {}
        for client in clients:
            groups.setdefault(client.topics & topics, []).append(client)
        seen = self._events.get(user, 0)
        for wanted, group in groups.items():
            fragments = await self._render(user, wanted)
            if fragments:
                message = _fragments_message(fragments)
                for client in group:
                    self._send(client, message)
        if self._events.get(user, 0) != seen and user not in self._dirty_timers:
            # Overtaken while rendering by a change whose refresh may already have been sent: send again.
            self.mark(user, topics)

    async def _render(self, user: UUID, topics: frozenset[str]) -> dict[str, str]:
        self._render_queue += 1
        try:
            await self._render_slots.acquire()
        finally:
            self._render_queue -= 1
        try:
            fragments = await self.render(user, topics)
        except Exception:  # a failed render costs one update, never the socket
            log.exception("live: rendering %s failed", ",".join(sorted(topics)))
            return {}
        finally:
            self._render_slots.release()
        self.renders += 1
        return fragments

    async def _resync(self) -> None:
        """The change listener (re)connected: notifications may have been missed, so refresh every socket."""
        for user, clients in list(self._clients.items()):
            self.mark(user, frozenset().union(*(c.topics for c in clients)))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- prices ---------------------------------------------------------------------------------------------------

    async def _consume_ticks(self, ticks: Subscription) -> None:
        while True:
            try:
                batch = await ticks.get_many()
            except EOFError:
                return
            self.publish_prices({t.symbol: price_entry(t.price, t.ts) for t in batch})

    async def _on_prices_payload(self, payload: str) -> None:
        self.publish_prices(parse_prices(payload))

    async def _reload_prices(self) -> None:
        """The prices listener (re)connected: push what was persisted meanwhile for the symbols pages show."""
        symbols = list(self._by_symbol)
        if symbols:
            self.publish_prices(await self._read_prices(symbols))

    def publish_prices(self, entries: dict[str, PriceEntry]) -> None:
        """Fan new last prices out to the sockets whose user holds them."""
        moved: set[str] = set()
        for symbol, entry in entries.items():
            before = self._prices.get(symbol)
            if before is None or before["price"] != entry["price"]:
                moved.add(symbol)
            self._prices[symbol] = entry
        now = time.monotonic()
        touched: dict[Client, dict[str, PriceEntry]] = {}
        for symbol, entry in entries.items():
            for client in self._by_symbol.get(symbol, ()):
                touched.setdefault(client, {})[symbol] = entry
        encoded: dict[tuple[str, ...], str] = {}  # sockets showing the same symbols share one encoded message
        portfolio_users: set[UUID] = set()
        for client, update in touched.items():
            if moved.intersection(update) and "portfolio" in client.topics:
                portfolio_users.add(client.user)
            if client.pending_prices or now - client.prices_sent_at < self.price_window_s:
                client.pending_prices.update(update)  # sent when this socket's window ends
                if client.prices_timer is None:
                    delay = max(0.0, client.prices_sent_at + self.price_window_s - now)
                    client.prices_timer = asyncio.get_running_loop().call_later(delay, self._flush_prices, client)
                continue
            key = tuple(sorted(update))
            message = encoded.get(key)
            if message is None:
                message = encoded[key] = _prices_message(update)
            self._send(client, message)
            client.prices_sent_at = now
        for user in portfolio_users:
            self._portfolio_soon(user)

    def _flush_prices(self, client: Client) -> None:
        client.prices_timer = None
        if client.closed or not client.pending_prices:
            return
        update, client.pending_prices = client.pending_prices, {}
        self._send(client, _prices_message(update))
        client.prices_sent_at = time.monotonic()

    def _portfolio_soon(self, user: UUID) -> None:
        """Re-render the user's portfolio for a price move: at most once per `portfolio_every_s`."""
        if user in self._portfolio_timers or "portfolio" in self._dirty.get(user, ()):
            return
        wait = self._portfolio_at.get(user, float("-inf")) + self.portfolio_every_s - time.monotonic()
        if self._render_queue:
            # Renders are queued (CPU or database busy): a price-driven refresh is best effort, so it waits a
            # whole period rather than adding to the queue; prices themselves still go out at once. Events
            # (fills, alerts, ...) are never put off.
            self.shed += 1
            wait = max(wait, self.portfolio_every_s)
        if wait <= 0:
            self.mark(user, ("portfolio",))
            return

        def due() -> None:
            self._portfolio_timers.pop(user, None)
            self.mark(user, ("portfolio",))

        self._portfolio_timers[user] = asyncio.get_running_loop().call_later(wait, due)

    async def _current_prices(self, symbols: Iterable[str]) -> dict[str, PriceEntry]:
        wanted = set(symbols)
        out: dict[str, PriceEntry] = {}
        for symbol in wanted:
            tick = self.bus.last(symbol) if self.bus is not None else None
            if tick is not None:
                out[symbol] = price_entry(tick.price, tick.ts)
            elif symbol in self._prices:
                out[symbol] = self._prices[symbol]
        missing = sorted(wanted - out.keys())
        if missing:
            out.update(await self._read_prices(missing))
        return out

    async def _read_prices(self, symbols: list[str]) -> dict[str, PriceEntry]:
        """Last prices as persisted (reference data: readable without a user's scope)."""
        try:
            async with self.database.engine.connect() as conn:
                rows = (await conn.execute(_LAST_PRICES, {"symbols": symbols})).all()
        except DATABASE_ERRORS as exc:
            log.warning("live: could not read last prices (%s)", exc)
            return {}
        return {row.symbol: price_entry(row.price, row.ts) for row in rows}


def _fragments_message(fragments: dict[str, str]) -> str:
    return json.dumps({"type": "fragments", "fragments": fragments}, separators=(",", ":"))


def _prices_message(prices: dict[str, PriceEntry]) -> str:
    return json.dumps({"type": "prices", "prices": prices}, separators=(",", ":"))


# -- routes -----------------------------------------------------------------------------------------------------------

LIVE_HUB = web.AppKey("live_hub", LiveHub)
LIVE_AUTH = web.AppKey[Authenticate]("live_authenticate")
LIVE_ORIGINS = web.AppKey("live_origins", frozenset[str])


def add_live_routes(
    app: web.Application, hub: LiveHub, authenticate: Authenticate, *, origins: Iterable[str] = ()
) -> None:
    """GET /live (the dashboard serves /static/live.js); the hub starts and stops with the app.

    `origins`: the dashboard's own (from its public URL); the origin the request was made to is always accepted too.
    """
    app[LIVE_HUB] = hub
    app[LIVE_AUTH] = authenticate
    app[LIVE_ORIGINS] = frozenset(o.lower() for o in origins)
    app.router.add_get("/live", live_socket)
    app.cleanup_ctx.append(hub.context)
    app.on_shutdown.append(hub.close_sockets)


async def live_socket(request: web.Request) -> web.StreamResponse:
    origin = request.headers.get("Origin")
    own = f"{request.scheme}://{request.host}".lower()
    if origin is None or (origin.lower() != own and origin.lower() not in request.app[LIVE_ORIGINS]):
        log.info("live: refused a websocket handshake from origin %r", (origin or "")[:100])
        raise web.HTTPForbidden(text="Live updates are only for the dashboard's own pages.")
    user = await request.app[LIVE_AUTH](request)
    if user is None:
        raise web.HTTPUnauthorized(text="Not signed in: run /dashboard in Discord to get a sign-in link.")
    topics = _topics(request.query.get("topics"))
    return await request.app[LIVE_HUB].serve(request, user, topics)
