"""The market feed: one websockets client for every provider, kept alive for as long as the worker runs.

It connects, sends the adapter's subscribe frames (again after every reconnect), hands each frame to the adapter and
publishes the ticks. It stays up on its own:
- a connection that drops or can't be made is retried with exponential backoff and full jitter (a random delay up
  to min(cap, initial x 2^attempt)); the attempt count resets once a connection has stayed up for `healthy_after_s`;
- websockets' pings find a dead TCP peer (`ping_interval_s`, `ping_timeout_s`); a silence watchdog finds a live peer
  that stopped sending (no frame, not even the provider's heartbeat, for `silence_timeout_s`) and reconnects;
- a provider's shutdown notice makes it reconnect at once; a frame that doesn't parse is counted and skipped.

Staleness is per symbol: one with no tick for `stale_after_s` is stale (so is one that hasn't ticked yet). Each
event is logged once when it happens, never per frame or per retry: a disconnect with its retry delay, the first
failed attempt then a summary every `summary_every_s` while still down, the reconnect, the subscription, each batch
of symbols turning stale or fresh again, the first malformed frame then a periodic count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable
from typing import Literal
from urllib.parse import urlsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI, WebSocketException
from websockets.uri import parse_uri

from core import metrics
from core.market.providers.base import ProviderAdapter, excerpt
from core.market.ticks import Tick

log = logging.getLogger(__name__)

_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
FeedStatus = Literal["ok", "stale", "down"]


def check_url(url: str) -> None:
    """ValueError unless `url` is a ws:// or wss:// URL."""
    try:
        parse_uri(url)
    except InvalidURI as exc:
        raise ValueError(str(exc)) from None


def redact_url(url: str) -> str:
    """`url` without credentials or query (some providers put an API token there), for logs."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    return f"{parts.scheme}://{netloc}{parts.path}"


def _names(symbols: Iterable[str], limit: int = 10) -> str:
    ordered = sorted(symbols)
    shown = ", ".join(ordered[:limit])
    return shown if len(ordered) <= limit else f"{shown} and {len(ordered) - limit} more"


def _closed_by_server(ws: ClientConnection) -> str:
    code, reason = ws.close_code, ws.close_reason
    if code is None or code == 1006:
        return "connection lost without a close frame"
    return f"the server closed the connection with code {code}" + (f" ({reason})" if reason else "")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, ConnectionClosed):
        frame = exc.rcvd or exc.sent
        if frame is None:
            return "connection lost without a close frame"
        return f"closed with code {frame.code}" + (f" ({frame.reason})" if frame.reason else "")
    if isinstance(exc, InvalidStatus):
        return f"HTTP {exc.response.status_code} on the websocket handshake"
    if isinstance(exc, TimeoutError):
        return "timed out"
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if isinstance(exc, OSError) else text


class MarketFeed:
    """Streams `symbols` (canonical) from one provider into `publish` until `stop()`."""

    def __init__(
        self,
        adapter: ProviderAdapter,
        url: str,
        symbols: Iterable[str],
        publish: Callable[[Tick], None],
        *,
        stale_after_s: float,
        silence_timeout_s: float = 30.0,
        backoff_initial_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        healthy_after_s: float = 60.0,
        ping_interval_s: float | None = 20.0,
        ping_timeout_s: float | None = 20.0,
        open_timeout_s: float = 10.0,
        close_timeout_s: float = 2.0,
        check_every_s: float | None = None,
        summary_every_s: float = 60.0,
        rng: random.Random | None = None,
        on_staleness: Callable[[str, bool], None] | None = None,
    ) -> None:
        check_url(url)  # an invalid URL is a configuration error: fail now, not in the retry loop
        self.adapter = adapter
        self.url = url
        self.symbols = sorted(set(symbols))
        self.stale_after_s = stale_after_s
        self.silence_timeout_s = silence_timeout_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_cap_s = backoff_cap_s
        self.healthy_after_s = healthy_after_s
        self.summary_every_s = summary_every_s
        self.check_every_s = check_every_s or max(0.05, min(1.0, stale_after_s / 4, silence_timeout_s / 4))
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.open_timeout_s = open_timeout_s
        self.close_timeout_s = close_timeout_s
        # A local server (the sim) is never reached through the environment's HTTP(S)_PROXY.
        self._proxy: Literal[True] | None = None if urlsplit(url).hostname in _LOOPBACK else True
        self._publish = publish
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not security
        self._on_staleness = on_staleness
        self._name = f"market feed ({adapter.name})"

        self.connected = False
        self.connections = 0
        self.failed_attempts = 0  # consecutive, since the last successful connection
        self.ticks = 0
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._close_reason: str | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._last_message = 0.0
        self._connected_at = 0.0
        self._last_tick: dict[str, float] = {}
        self._stale: set[str] = set(self.symbols)  # not a single tick yet
        self._fresh_again: set[str] = set()
        self._all_ticking_logged = False
        self._silent_warned = False  # "no tick yet for ...": said once, not after every reconnect
        self._malformed_seen = adapter.malformed  # what _read has looked at
        self._malformed_logged = adapter.malformed  # what a log line has reported
        self._malformed_first_logged = False
        self._adapter_failure_logged = False
        self._malformed_summary_at = 0.0
        self._errors_logged: set[str] = set()
        # Metrics, bound to this provider once (an increment on the read path is then one call).
        provider = adapter.name
        self._m_ticks = metrics.FEED_TICKS_RECEIVED.labels(provider)
        self._m_connects = metrics.FEED_CONNECTS.labels(provider)
        self._m_reconnects = metrics.FEED_RECONNECTS.labels(provider)
        self._m_failures = metrics.FEED_CONNECT_FAILURES.labels(provider)
        self._m_connected = metrics.FEED_CONNECTED.labels(provider)
        self._m_stale = metrics.FEED_STALE_SYMBOLS.labels(provider)
        metrics.FEED_SYMBOLS.labels(provider).set(len(self.symbols))
        self._m_connected.set(0)
        self._m_stale.set(len(self._stale))

    # -- what other parts of the worker ask ------------------------------------------------------------------------

    @property
    def malformed(self) -> int:
        """Frames skipped because they didn't parse, since the adapter was made."""
        return self.adapter.malformed

    @property
    def stale(self) -> frozenset[str]:
        return frozenset(self._stale)

    def is_stale(self, symbol: str) -> bool:
        """True for a symbol without a tick in the last `stale_after_s` (or ever, or not streamed here)."""
        return symbol in self._stale or symbol not in self._last_tick

    def status(self) -> FeedStatus:
        """The feed's health in one word, for /healthz: down (not connected), stale (some symbol is) or ok."""
        if not self.connected:
            return "down"
        return "stale" if self._stale else "ok"

    # -- lifecycle --------------------------------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name=self._name)

    async def stop(self) -> None:
        """Close the connection politely and end the task; it doesn't log a disconnect."""
        self._stopping.set()
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            _, pending = await asyncio.wait({self._task}, timeout=self.close_timeout_s + 1)
            if pending:  # e.g. stuck in an opening handshake: cancellation closes the socket
                self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        monitor = asyncio.create_task(self._monitor(), name=f"{self._name} monitor")
        try:
            await self._connect_loop()
        finally:
            monitor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await monitor
            for task in list(self._closing):
                task.cancel()

    # -- the connection ---------------------------------------------------------------------------------------------

    def backoff(self, attempt: int) -> float:
        """The delay before retry number `attempt` (0-based): full jitter, uniform in [0, min(cap, initial x 2^n)]."""
        return self._rng.uniform(0, min(self.backoff_cap_s, self.backoff_initial_s * 2 ** min(attempt, 30)))

    async def _connect_loop(self) -> None:
        attempt = 0
        failures = 0
        down_since: float | None = None
        summary_at = 0.0
        where = redact_url(self.url)
        while not self._stopping.is_set():
            self._close_reason = None
            was_connected = False
            try:
                async with connect(
                    self.url,
                    ping_interval=self.ping_interval_s,
                    ping_timeout=self.ping_timeout_s,
                    open_timeout=self.open_timeout_s,
                    close_timeout=self.close_timeout_s,
                    proxy=self._proxy,
                ) as ws:
                    was_connected = True
                    self._on_connected(ws, failures, down_since)
                    failures, down_since = 0, None
                    self.failed_attempts = 0
                    for frame in self.adapter.subscribe_messages(self.symbols):
                        await ws.send(frame)
                    log.info("%s: subscribed to %d symbol(s) on %s", self._name, len(self.symbols), where)
                    await self._read(ws)
                reason = self._close_reason or _closed_by_server(ws)
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = self._close_reason or _describe(exc)
            except Exception as exc:  # a bug downstream must cost a reconnect, not the feed
                log.exception("%s: unexpected error", self._name)
                reason = f"unexpected {type(exc).__name__}"
            finally:
                self._ws = None
                self.connected = False
                self._m_connected.set(0)
            if self._stopping.is_set():
                break
            now = time.monotonic()
            if was_connected:
                if now - self._connected_at >= self.healthy_after_s or self._close_reason is not None:
                    attempt = 0
                down_since, summary_at = now, now
                delay = self.backoff(attempt)
                log.warning("%s: disconnected (%s); reconnecting in %.1f s", self._name, reason, delay)
            else:
                failures += 1
                self.failed_attempts = failures
                self._m_failures.inc()
                if down_since is None:
                    down_since = now
                delay = self.backoff(attempt)
                if failures == 1:
                    summary_at = now
                    log.warning("%s: can't connect to %s (%s); retrying in %.1f s", self._name, where, reason, delay)
                elif now - summary_at >= self.summary_every_s:
                    summary_at = now
                    log.warning(
                        "%s: still not connected after %d attempts over %.0f s (last: %s); retrying in %.1f s",
                        self._name,
                        failures,
                        now - down_since,
                        reason,
                        delay,
                    )
                else:
                    log.debug("%s: attempt %d failed (%s); retrying in %.1f s", self._name, failures, reason, delay)
            attempt += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    def _on_connected(self, ws: ClientConnection, failures: int, down_since: float | None) -> None:
        self._ws = ws
        self.connected = True
        self.connections += 1
        self._connected_at = self._last_message = time.monotonic()
        self._m_connected.set(1)
        self._m_connects.inc()
        if self.connections > 1:
            self._m_reconnects.inc()
        where = redact_url(self.url)
        if down_since is None:
            log.info("%s: connected to %s", self._name, where)
        else:
            retries = f", {failures} failed attempt(s)" if failures else ""
            log.info(
                "%s: reconnected to %s (%.1f s without a connection%s)",
                self._name,
                where,
                self._connected_at - down_since,
                retries,
            )

    async def _read(self, ws: ClientConnection) -> None:
        adapter, publish, last_tick, stale = self.adapter, self._publish, self._last_tick, self._stale
        async for raw in ws:
            now = time.monotonic()
            self._last_message = now
            try:
                ticks = adapter.parse(raw)
            except Exception:  # an adapter bug on one frame must not take the feed down
                adapter.malformed += 1
                if not self._adapter_failure_logged:
                    self._adapter_failure_logged = True
                    log.exception("%s: the adapter failed on a frame: %s", self._name, excerpt(raw))
                ticks = []
            if adapter.malformed != self._malformed_seen:
                self._on_malformed(raw)
            if adapter.events:
                await self._on_events(ws)
            for tick in ticks:
                symbol = tick.symbol
                if symbol in stale:
                    self._on_fresh(symbol)
                last_tick[symbol] = now
                publish(tick)
            if ticks:
                self.ticks += len(ticks)
                self._m_ticks.inc(len(ticks))  # once per frame, not per tick

    def _on_malformed(self, raw: str | bytes) -> None:
        self._malformed_seen = self.adapter.malformed
        if not self._malformed_first_logged:
            self._malformed_first_logged = True
            self._malformed_logged = self.adapter.malformed
            self._malformed_summary_at = time.monotonic()
            log.warning(
                "%s: skipped a malformed frame (further ones are counted, with a summary every %.0f s): %s",
                self._name,
                self.summary_every_s,
                excerpt(raw),
            )

    async def _on_events(self, ws: ClientConnection) -> None:
        events = list(self.adapter.events)
        self.adapter.events.clear()
        for event in events:
            if event.kind == "subscribed":
                log.debug("%s: subscription acknowledged: %s", self._name, event.detail)
            elif event.kind == "error":
                if event.detail not in self._errors_logged:
                    self._errors_logged.add(event.detail)
                    log.warning("%s: the provider reported an error: %s", self._name, event.detail)
            elif event.kind == "reconnect" and self._close_reason is None:
                self._close_reason = event.detail
                await ws.close()

    def _on_fresh(self, symbol: str) -> None:
        self._stale.discard(symbol)
        self._m_stale.set(len(self._stale))
        if symbol in self._last_tick:  # it had ticked before, went stale, and is back (a first tick isn't news)
            self._fresh_again.add(symbol)
        if self._on_staleness is not None:
            self._on_staleness(symbol, False)

    # -- the monitor: staleness, silence, summaries -----------------------------------------------------------------

    async def _monitor(self) -> None:
        while True:
            await asyncio.sleep(self.check_every_s)
            now = time.monotonic()
            self._check_silence(now)
            self._check_staleness(now)
            self._check_malformed(now)

    def _check_silence(self, now: float) -> None:
        ws = self._ws
        silent_for = now - self._last_message
        if ws is None or not self.connected or self._close_reason is not None or silent_for < self.silence_timeout_s:
            return
        self._close_reason = f"no message for {silent_for:.1f} s"
        task = asyncio.create_task(ws.close(), name=f"{self._name} close")
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    def _check_staleness(self, now: float) -> None:
        newly = {s for s, at in self._last_tick.items() if s not in self._stale and now - at > self.stale_after_s}
        if newly:
            self._stale |= newly
            self._m_stale.set(len(self._stale))
            self._fresh_again -= newly
            log.warning(
                "%s: %d symbol(s) stale (no tick for %g s): %s",
                self._name,
                len(newly),
                self.stale_after_s,
                _names(newly),
            )
            if self._on_staleness is not None:
                for symbol in sorted(newly):
                    self._on_staleness(symbol, True)
        if self._fresh_again:
            again, self._fresh_again = self._fresh_again, set()
            log.info("%s: %d symbol(s) fresh again: %s", self._name, len(again), _names(again))
        if not self._all_ticking_logged and len(self._last_tick) == len(self.symbols):
            self._all_ticking_logged = True
            log.info("%s: receiving ticks for all %d symbol(s)", self._name, len(self.symbols))
        missing = [s for s in self.symbols if s not in self._last_tick]
        if missing and not self._silent_warned and self.connected and now - self._connected_at >= self.stale_after_s:
            self._silent_warned = True
            log.warning(
                "%s: no tick yet for %d symbol(s) %.0f s after subscribing: %s",
                self._name,
                len(missing),
                now - self._connected_at,
                _names(missing),
            )

    def _check_malformed(self, now: float) -> None:
        count = self.adapter.malformed
        if count > self._malformed_logged and now - self._malformed_summary_at >= self.summary_every_s:
            log.warning(
                "%s: skipped %d more malformed frame(s) in the last %.0f s (%d in all)",
                self._name,
                count - self._malformed_logged,
                now - self._malformed_summary_at,
                count,
            )
            self._malformed_logged = count
            self._malformed_summary_at = now
