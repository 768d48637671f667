"""The worker's alert engine: evaluates every tick against the active alerts and fires the ones it crosses.

It owns an AlertIndex rebuilt from the database at start (`reload`) and kept in step with alerts created or deleted by
any process (`on_change`, fed by a ChangeListener on tradedesk_changes). A symbol's previous price is the last tick
the engine saw; at start, the last known price in last_prices, so a move while the worker (or the feed) was away
still fires on the first tick after it.

Tick consumption never waits for the database: `on_tick` does only the in-memory work (the crossing test against
the previous price, which it then replaces) and queues every crossed alert. A separate coroutine commits the queue:
`run_fires()` as a task of its own, or `flush()` called directly. So a slow or stuck commit never makes the engine
fall behind the feed (and the tick bus never conflates away a crossing such as 99 -> 101 -> 99 because of it).
`drain()` commits whatever is queued at a graceful stop, once the feed has stopped.

A trigger is one system_scope transaction calling fire_alert (migrations/0010_alerts.sql): it marks the alert (once:
triggered; recurring: count + 1 and re-armed after its cooldown) and inserts the notification, conditional on the
trigger count the engine holds. So a trigger is never doubled (a retry or a restarted engine finds the count moved
on; the dedupe key alert:<id>:<n> backs that up) and never lost: a transaction that fails (a database error, or a
dead pooled connection surfacing through SQLAlchemy) is queued and retried, at most every retry_after_s, until it
commits or the alert is gone.

An alert is created after a check against a price (alerts.checked_price). When the engine takes in a fresh alert
(never triggered, not cooling down) it evaluates the move from that price to its own current price as a crossing,
so a tick that crosses the level between the create's commit and the engine hearing of it still fires it.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
from sqlalchemy.exc import SQLAlchemyError

from core import metrics
from core.alerts.index import PRICE_DECIMALS, AlertIndex, Entry, scaled, scaled_threshold
from core.db.database import DATABASE_ERRORS, Database, raw_connection
from core.live import notify_live
from core.market.sessions import Clock, utc_clock
from core.market.ticks import Tick

log = logging.getLogger(__name__)

_EVALUATED = metrics.TICKS_EVALUATED.labels("alerts")

REASON = "alerts.engine"
ONCE = -1  # Entry.cooldown_s of an alert that fires once

_COLUMNS = (
    "a.id, a.symbol, a.direction, a.threshold, a.trigger_count, a.recurring, a.cooldown_seconds, a.expires_at, "
    "a.rearm_at, a.status, a.checked_price"
)
_ACTIVE = f"SELECT {_COLUMNS} FROM alerts a WHERE a.status = 'active'"
_ONE = f"SELECT {_COLUMNS}, lp.price FROM alerts a LEFT JOIN last_prices lp USING (symbol) WHERE a.id = $1"
_PRICES = "SELECT symbol, price FROM last_prices"
# What a database that is away looks like: through the pool (SQLAlchemy wraps a dead pooled connection, a failed
# connect or pre-ping) or from asyncpg directly (the raw connection under a scope). Retried later, never dropped.
_RETRY_ERRORS: tuple[type[BaseException], ...] = (*DATABASE_ERRORS, SQLAlchemyError, asyncpg.InterfaceError)

Fire = tuple[Entry, Decimal, datetime]  # the alert as crossed, the tick's price and time


class AlertsUnavailable(ConnectionError):
    """The database could not be read (reload, on_change): the change listener reconnects and reloads."""


def _entry(row: Any) -> Entry:
    expires: datetime | None = row["expires_at"]
    return Entry(
        row["symbol"],
        row["direction"],
        scaled_threshold(row["threshold"]),
        row["id"].bytes,
        row["trigger_count"],
        row["cooldown_seconds"] if row["recurring"] else ONCE,
        math.ceil(expires.timestamp()) if expires is not None else 0,  # never earlier than the database says
    )


def crossed_since(entry: Entry, checked: tuple[int, int], current: tuple[int, int]) -> bool:
    """Whether a move from `checked` to `current` (scaled floor, ceil) crosses the entry (index.py's rule)."""
    if entry.direction == "above":
        return checked[0] < entry.threshold <= current[0]
    return current[1] <= entry.threshold < checked[1]


class AlertEngine:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utc_clock,
        retry_after_s: float = 1.0,
        on_fired: Callable[[], None] | None = None,
        autostart: bool = True,
    ) -> None:
        self.db = db
        self.on_fired = on_fired  # e.g. wake the outbox dispatcher: the DM goes out now, not at its next poll
        self.clock = clock
        self.index = AlertIndex()
        self.retry_after_s = retry_after_s
        self.fired = 0  # triggers committed by this engine
        self.failed = 0  # trigger transactions that failed (and were queued for a retry)
        # Recurring alerts cooling down: (rearm epoch seconds, seq, entry). Re-indexed by the first tick after.
        self._rearm: list[tuple[float, int, Entry]] = []
        self._seq = itertools.count()
        # Crossed by a tick, not yet committed: in tick order, taken by flush().
        self._pending: deque[Fire] = deque()
        # Triggers whose transaction failed: retried by flush(), at most every retry_after_s unless forced.
        self._retry: list[Fire] = []
        self._retry_at = 0.0
        self._inflight: Fire | None = None  # the fire whose transaction is running
        # Alerts out of the index whose re-read failed: re-read by flush() (so they are never lost either).
        self._stale: set[UUID] = set()
        self._last: dict[str, tuple[Decimal, datetime]] = {}  # newest tick per symbol: the price a late fire uses
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        # Without a run_fires() task of the caller's, the first queued fire starts one (autostart); False: the
        # caller commits with flush() (tests, the benchmark).
        self.autostart = autostart
        self._committing = False
        self._committer: asyncio.Task[None] | None = None

    def __contains__(self, alert_id: UUID) -> bool:
        """Whether the engine holds the alert (indexed, cooling down, waiting for its commit or a retry)."""
        key = alert_id.bytes
        return (
            self.index.find(key) is not None
            or any(e.id == key for _, _, e in self._rearm)
            or self._held(key) is not None
            or alert_id in self._stale
        )

    @property
    def pending_retries(self) -> int:
        return len(self._retry)

    @property
    def pending_fires(self) -> int:
        """Crossed alerts not yet committed (queued or waiting for a retry)."""
        return len(self._pending) + len(self._retry) + (self._inflight is not None)

    def _fires(self) -> itertools.chain[Fire]:
        return itertools.chain(self._pending, self._retry, [self._inflight] if self._inflight is not None else [])

    def _held(self, key: bytes) -> Entry | None:
        for e, _, _ in self._fires():
            if e.id == key:
                return e
        return None

    async def reload(self, now: datetime | None = None) -> None:
        """Rebuild the index from the database (at start, and after the change listener reconnects)."""
        try:
            async with self.db.system_scope(REASON) as s:
                conn = await raw_connection(s)
                rows = await conn.fetch(_ACTIVE)
                prices = await conn.fetch(_PRICES)
        except _RETRY_ERRORS as exc:
            raise AlertsUnavailable(f"alerts: can't reload the active alerts ({exc})") from exc
        held = {e.id for e, _, _ in self._fires()}
        index = AlertIndex()
        for p in prices:
            known = self.index.last_price(p["symbol"])  # our own last tick is newer than the throttled table
            index.set_price(p["symbol"], *(known or scaled(p["price"])))
        for symbol in self.index.symbols():
            known = self.index.last_price(symbol)
            if known is not None and index.last_price(symbol) is None:
                index.set_price(symbol, *known)
        at = now or self.clock()
        cutoff = at.timestamp()
        rearm: list[tuple[float, int, Entry]] = []
        active: list[Entry] = []
        crossed: list[Fire] = []
        for row in rows:
            entry = _entry(row)
            if entry.id in held:
                continue
            if entry.expires and entry.expires <= cutoff:
                continue  # expired: the expiry job marks it
            if row["rearm_at"] is not None and row["rearm_at"].timestamp() > cutoff:
                rearm.append((row["rearm_at"].timestamp(), next(self._seq), entry))
                continue
            fire = self._fresh_crossing(entry, row, index, at)
            if fire is not None:
                crossed.append(fire)
            else:
                active.append(entry)
        index.load(active)
        heapq.heapify(rearm)
        self.index, self._rearm = index, rearm
        self._stale.clear()  # every alert was just read
        self._queue(crossed)
        log.info("alerts: %d active alerts loaded (%d cooling down)", len(index), len(rearm))

    def _fresh_crossing(self, entry: Entry, row: Any, index: AlertIndex, now: datetime) -> Fire | None:
        """A fresh alert whose level the price crossed since its creation check: the fire it is owed."""
        checked: Decimal | None = row["checked_price"]
        if entry.trigger_count != 0 or checked is None or row["rearm_at"] is not None:
            return None
        current = index.last_price(entry.symbol)
        if current is None or not crossed_since(entry, scaled(checked), current):
            return None
        price, ts = self._last.get(entry.symbol) or (Decimal(current[0]).scaleb(-PRICE_DECIMALS), now)
        return entry, price, ts

    async def on_change(self, payload: str) -> None:
        """Follow a committed change "alerts:<id>": created, deleted or changed by any process."""
        table, _, key = payload.partition(":")
        if table != "alerts":
            return
        try:
            alert_id = UUID(key)
        except ValueError:
            log.warning("alerts: ignoring malformed change %r", payload[:80])
            return
        try:
            await self._refresh(alert_id)
        except _RETRY_ERRORS as exc:
            raise AlertsUnavailable(f"alerts: can't read alert {alert_id} ({exc})") from exc

    async def _refresh(self, alert_id: UUID, now: float | None = None) -> None:
        """Make the engine hold the alert exactly as the database has it now."""
        async with self.db.system_scope(REASON) as s:
            row = await (await raw_connection(s)).fetchrow(_ONE, alert_id)
        self._stale.discard(alert_id)
        key = alert_id.bytes
        held = self._held(key)
        if (
            held is not None
            and row is not None
            and row["status"] == "active"
            and row["trigger_count"] == held.trigger_count
        ):
            # Crossed and waiting for its commit, which acts on exactly this row: keep it, index nothing.
            self._forget(key, row, keep_fires=True)
            return
        self._forget(key, row)
        if row is None or row["status"] != "active":
            return
        entry = _entry(row)
        if self.index.last_price(entry.symbol) is None and row["price"] is not None:
            self.index.set_price(entry.symbol, *scaled(row["price"]))
        at = self.clock()
        rearm_at: datetime | None = row["rearm_at"]
        if rearm_at is not None and rearm_at.timestamp() > (now if now is not None else at.timestamp()):
            heapq.heappush(self._rearm, (rearm_at.timestamp(), next(self._seq), entry))
            return
        fire = self._fresh_crossing(entry, row, self.index, at)
        if fire is not None:
            self._queue([fire])
        else:
            self.index.add(entry)

    def _forget(self, key: bytes, row: Any, *, keep_fires: bool = False) -> None:
        removed = False
        if row is not None:
            removed = self.index.remove(row["symbol"], row["direction"], scaled_threshold(row["threshold"]), key)
        if not removed:
            self.index.discard(key)  # deleted (or changed): find it by id
        if any(e.id == key for _, _, e in self._rearm):
            self._rearm = [r for r in self._rearm if r[2].id != key]
            heapq.heapify(self._rearm)
        if not keep_fires:
            self._retry = [r for r in self._retry if r[0].id != key]
            if any(e.id == key for e, _, _ in self._pending):
                self._pending = deque(r for r in self._pending if r[0].id != key)

    async def on_tick(self, tick: Tick) -> None:
        """Evaluate one tick in memory and queue what it crosses; never waits for the database."""
        _EVALUATED.inc()
        if self._rearm:
            self._rearm_due(tick.ts.timestamp())
        self._last[tick.symbol] = (tick.price, tick.ts)
        f, c = scaled(tick.price)
        fired = self.index.crossed(tick.symbol, f, c)
        if fired:
            self._queue([(entry, tick.price, tick.ts) for entry in fired])

    def _queue(self, fires: list[Fire]) -> None:
        if fires:
            self._pending.extend(fires)
            self._wake.set()
            if self.autostart and not self._committing:
                self._committing = True
                self._committer = asyncio.get_running_loop().create_task(self.run_fires(), name="alerts.fires")

    def _rearm_due(self, now: float) -> None:
        while self._rearm and self._rearm[0][0] <= now:
            _, _, entry = heapq.heappop(self._rearm)
            self.index.add(entry)

    async def run_fires(self) -> None:
        """Commit crossed alerts as they are queued, and retry failed ones, until cancelled (the worker's task)."""
        self._committing = True
        try:
            await self._commit_loop()
        finally:
            self._committing = False

    async def _commit_loop(self) -> None:
        while True:
            if self._retry or self._stale:
                delay = max(0.0, self._retry_at - time.monotonic()) if self._retry else self.retry_after_s
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(delay, 0.01))
            else:
                await self._wake.wait()
            self._wake.clear()
            await self.flush()

    async def flush(self, *, force: bool = False) -> None:
        """Commit every queued fire (retries first, when due or forced), oldest first."""
        async with self._lock:
            if self._stale and (force or time.monotonic() >= self._retry_at):
                for alert_id in list(self._stale):
                    try:
                        await self._refresh(alert_id)
                    except _RETRY_ERRORS as exc:
                        self._retry_at = time.monotonic() + self.retry_after_s
                        log.warning("alerts: could not re-read alert %s (%s); will retry", alert_id, exc)
                        break
            if self._retry and (force or time.monotonic() >= self._retry_at):
                self._pending.extendleft(reversed(self._retry))
                self._retry = []
            fired_for: set[UUID] = set()  # users whose alerts fired in this batch: told once, after it
            while self._pending:
                fire = self._pending.popleft()
                try:
                    user = await self._fire(*fire)
                    if user is not None:
                        fired_for.add(user)
                except asyncio.CancelledError:
                    # Cut short mid-commit: still owed. Committing it again is safe (conditional on the count).
                    self._pending.appendleft(fire)
                    raise
                except Exception:
                    # Not a database outage: still never dropped, but loud. Retried like a failed transaction.
                    log.exception("alerts: firing alert %s failed unexpectedly; will retry", UUID(bytes=fire[0].id))
                    self.failed += 1
                    metrics.ALERT_FIRE_FAILURES.inc()
                    self._retry.append(fire)
                    self._retry_at = time.monotonic() + self.retry_after_s
            await self._tell_live(fired_for)

    async def _tell_live(self, users: set[UUID]) -> None:
        """One NOTIFY per batch of fires (never per tick): live dashboards re-render these users' alerts and inbox."""
        if not users:
            return
        try:
            async with self.db.system_scope(REASON) as s:
                await notify_live(s, dict.fromkeys(users, ("alerts", "inbox")))
        except _RETRY_ERRORS as exc:
            log.warning("alerts: could not tell live pages about %d user(s)' fires (%s)", len(users), exc)

    async def retry_pending(self, *, force: bool = False) -> None:
        """Retry the triggers whose transaction failed (at most every retry_after_s unless forced)."""
        await self.flush(force=force)

    async def drain(self, *, attempts: int = 3) -> int:
        """At a graceful stop, after the feed stopped: commit everything queued, retrying a few times.
        Returns how many fires are still uncommitted (0 unless the database stayed away)."""
        for attempt in range(attempts):
            await self.flush(force=True)
            if not self._pending and not self._retry:
                break
            if attempt + 1 < attempts:
                await asyncio.sleep(self.retry_after_s)
        left = self.pending_fires
        committer, self._committer = self._committer, None
        if committer is not None:  # one autostarted by a queued fire: nothing left for it to do
            committer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await committer
        if left:
            log.error("alerts: stopping with %d crossed alerts not fired (the database is away)", left)
        return left

    async def _fire(self, entry: Entry, price: Decimal, ts: datetime) -> UUID | None:
        """Commit one fire; the alert's owner when it fired, else None."""
        if entry.expires and entry.expires <= ts.timestamp():
            return None  # expired: dropped from the index; expire_alerts marks it
        alert_id = UUID(bytes=entry.id)
        self._inflight = (entry, price, ts)
        try:
            async with self.db.system_scope(REASON) as s:
                row = await (await raw_connection(s)).fetchrow(
                    "SELECT fire_alert($1, $2, $3, $4) AS notification, (SELECT user_id FROM alerts WHERE id = $1)",
                    alert_id,
                    entry.trigger_count,
                    price,
                    ts,
                )
            notification, owner = row["notification"], row["user_id"]
        except _RETRY_ERRORS as exc:
            self.failed += 1
            metrics.ALERT_FIRE_FAILURES.inc()
            self._retry.append((entry, price, ts))
            self._retry_at = time.monotonic() + self.retry_after_s
            log.warning("alerts: could not fire alert %s (%s); will retry", alert_id, exc)
            return None
        finally:
            self._inflight = None
        if notification is None:
            # Deleted, expired, or changed since we indexed it (e.g. fired by an earlier engine): take the
            # database's word for it.
            try:
                await self._refresh(alert_id, ts.timestamp())
            except _RETRY_ERRORS as exc:
                self._stale.add(alert_id)
                self._retry_at = time.monotonic() + self.retry_after_s
                log.warning("alerts: could not re-read alert %s (%s); will retry", alert_id, exc)
            return None
        self.fired += 1
        metrics.ALERTS_TRIGGERED.inc()
        log.info("alerts: fired %s %s %s at %s", entry.symbol, entry.direction, alert_id, price)
        if self.on_fired is not None:
            self.on_fired()
        if entry.cooldown_s != ONCE:
            rearm = replace(entry, trigger_count=entry.trigger_count + 1)
            heapq.heappush(self._rearm, (ts.timestamp() + entry.cooldown_s, next(self._seq), rearm))
        return owner if isinstance(owner, UUID) else None
