"""The worker's alert engine: evaluates every tick against the active alerts and fires the ones it crosses.

It owns an AlertIndex rebuilt from the database at start (`reload`) and kept in step with alerts created or deleted by
any process (`on_change`, fed by a ChangeListener on tradedesk_changes). A symbol's previous price is the last tick
the engine saw; at start, the last known price in last_prices, so a move while the worker (or the feed) was away
still fires on the first tick after it.

A trigger is one system_scope transaction calling fire_alert (migrations/0010_alerts.sql): it marks the alert (once:
triggered; recurring: count + 1 and re-armed after its cooldown) and inserts the notification, conditional on the
trigger count the engine holds. So a trigger is never doubled (a retry or a restarted engine finds the count moved
on; the dedupe key alert:<id>:<n> backs that up) and never lost: a transaction that fails is queued and retried
before the next tick is evaluated, until it commits or the alert is gone.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg

from core.alerts.index import AlertIndex, Entry, scaled, scaled_threshold
from core.db.database import Database, raw_connection
from core.market.sessions import Clock, utc_clock
from core.market.ticks import Tick

log = logging.getLogger(__name__)

REASON = "alerts.engine"
ONCE = -1  # Entry.cooldown_s of an alert that fires once

_COLUMNS = (
    "a.id, a.symbol, a.direction, a.threshold, a.trigger_count, a.recurring, a.cooldown_seconds, a.expires_at, "
    "a.rearm_at, a.status"
)
_ACTIVE = f"SELECT {_COLUMNS} FROM alerts a WHERE a.status = 'active'"
_ONE = f"SELECT {_COLUMNS}, lp.price FROM alerts a LEFT JOIN last_prices lp USING (symbol) WHERE a.id = $1"
_PRICES = "SELECT symbol, price FROM last_prices"
_RETRY_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


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


class AlertEngine:
    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = utc_clock,
        retry_after_s: float = 1.0,
        on_fired: Callable[[], None] | None = None,
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
        # Triggers whose transaction failed: retried before the next tick, at most every retry_after_s.
        self._retry: list[tuple[Entry, Decimal, datetime]] = []
        self._retry_at = 0.0

    def __contains__(self, alert_id: UUID) -> bool:
        """Whether the engine holds the alert (indexed, or cooling down, or waiting for a retry)."""
        key = alert_id.bytes
        return (
            self.index.find(key) is not None
            or any(e.id == key for _, _, e in self._rearm)
            or any(e.id == key for e, _, _ in self._retry)
        )

    @property
    def pending_retries(self) -> int:
        return len(self._retry)

    async def reload(self, now: datetime | None = None) -> None:
        """Rebuild the index from the database (at start, and after the change listener reconnects)."""
        async with self.db.system_scope(REASON) as s:
            conn = await raw_connection(s)
            rows = await conn.fetch(_ACTIVE)
            prices = await conn.fetch(_PRICES)
        retrying = {e.id for e, _, _ in self._retry}
        index = AlertIndex()
        for p in prices:
            known = self.index.last_price(p["symbol"])  # our own last tick is newer than the throttled table
            index.set_price(p["symbol"], *(known or scaled(p["price"])))
        for symbol in self.index.symbols():
            known = self.index.last_price(symbol)
            if known is not None and index.last_price(symbol) is None:
                index.set_price(symbol, *known)
        cutoff = (now or self.clock()).timestamp()
        rearm: list[tuple[float, int, Entry]] = []
        active: list[Entry] = []
        for row in rows:
            entry = _entry(row)
            if entry.id in retrying:
                continue
            if entry.expires and entry.expires <= cutoff:
                continue  # expired: the expiry job marks it
            if row["rearm_at"] is not None and row["rearm_at"].timestamp() > cutoff:
                rearm.append((row["rearm_at"].timestamp(), next(self._seq), entry))
            else:
                active.append(entry)
        index.load(active)
        heapq.heapify(rearm)
        self.index, self._rearm = index, rearm
        log.info("alerts: %d active alerts loaded (%d cooling down)", len(index), len(rearm))

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
        await self._refresh(alert_id)

    async def _refresh(self, alert_id: UUID, now: float | None = None) -> None:
        """Make the engine hold the alert exactly as the database has it now."""
        async with self.db.system_scope(REASON) as s:
            row = await (await raw_connection(s)).fetchrow(_ONE, alert_id)
        self._forget(alert_id.bytes, row)
        if row is None or row["status"] != "active":
            return
        entry = _entry(row)
        if self.index.last_price(entry.symbol) is None and row["price"] is not None:
            self.index.set_price(entry.symbol, *scaled(row["price"]))
        rearm_at: datetime | None = row["rearm_at"]
        if rearm_at is not None and rearm_at.timestamp() > (now if now is not None else self.clock().timestamp()):
            heapq.heappush(self._rearm, (rearm_at.timestamp(), next(self._seq), entry))
        else:
            self.index.add(entry)

    def _forget(self, key: bytes, row: Any) -> None:
        removed = False
        if row is not None:
            removed = self.index.remove(row["symbol"], row["direction"], scaled_threshold(row["threshold"]), key)
        if not removed:
            self.index.discard(key)  # deleted (or changed): find it by id
        if any(e.id == key for _, _, e in self._rearm):
            self._rearm = [r for r in self._rearm if r[2].id != key]
            heapq.heapify(self._rearm)
        self._retry = [r for r in self._retry if r[0].id != key]

    async def on_tick(self, tick: Tick) -> None:
        if self._retry:
            await self.retry_pending()
        if self._rearm:
            self._rearm_due(tick.ts.timestamp())
        f, c = scaled(tick.price)
        for entry in self.index.crossed(tick.symbol, f, c):
            await self._fire(entry, tick.price, tick.ts)

    def _rearm_due(self, now: float) -> None:
        while self._rearm and self._rearm[0][0] <= now:
            _, _, entry = heapq.heappop(self._rearm)
            self.index.add(entry)

    async def retry_pending(self, *, force: bool = False) -> None:
        """Retry the triggers whose transaction failed (at most every retry_after_s unless forced)."""
        if not self._retry or (not force and time.monotonic() < self._retry_at):
            return
        pending, self._retry = self._retry, []
        for entry, price, ts in pending:
            await self._fire(entry, price, ts)

    async def _fire(self, entry: Entry, price: Decimal, ts: datetime) -> None:
        if entry.expires and entry.expires <= ts.timestamp():
            return  # expired: dropped from the index; expire_alerts marks it
        alert_id = UUID(bytes=entry.id)
        try:
            async with self.db.system_scope(REASON) as s:
                notification = await (await raw_connection(s)).fetchval(
                    "SELECT fire_alert($1, $2, $3, $4)", alert_id, entry.trigger_count, price, ts
                )
        except _RETRY_ERRORS as exc:
            self.failed += 1
            self._retry.append((entry, price, ts))
            self._retry_at = time.monotonic() + self.retry_after_s
            log.warning("alerts: could not fire alert %s (%s); will retry", alert_id, exc)
            return
        if notification is None:
            # Deleted, expired, or changed since we indexed it (e.g. fired by an earlier engine): take the
            # database's word for it.
            try:
                await self._refresh(alert_id, ts.timestamp())
            except _RETRY_ERRORS as exc:
                log.warning("alerts: could not re-read alert %s (%s)", alert_id, exc)
            return
        self.fired += 1
        log.info("alerts: fired %s %s %s at %s", entry.symbol, entry.direction, alert_id, price)
        if self.on_fired is not None:
            self.on_fired()
        if entry.cooldown_s != ONCE:
            rearm = replace(entry, trigger_count=entry.trigger_count + 1)
            heapq.heappush(self._rearm, (ts.timestamp() + entry.cooldown_s, next(self._seq), rearm))
