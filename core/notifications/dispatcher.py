"""The outbox dispatcher: claim due notifications, deliver them through a `Notifier`, record how it went.

One round (`Dispatcher.dispatch_once`) is three steps, and no lock is held while talking to Discord:

1. Claim, in one short system_scope("notifications.dispatch") transaction: up to `batch_size` due pending rows,
   `FOR UPDATE SKIP LOCKED` (concurrent dispatchers take disjoint rows), each leased by moving its next_attempt_at
   `lease` ahead. Rows that must wait are held in the same transaction, never dropped: a user's mute
   (alerts_muted_until, for alerts) or quiet hours (in their timezone, possibly spanning midnight) move the row to
   when they end; a user whose DMs are closed gets their rows parked (next_attempt_at = infinity) until
   `mark_dm_open`. A burst for one user becomes one message listing them all: a group, persisted on its rows
   (group_id = the leader's id, the nonce) in the same transaction, with the claim's lease_token.
2. Deliver, outside any transaction: each message waits for the shared limiter (one token per Discord request: two
   when the DM channel isn't cached yet), then goes to the notifier with the group's leader id as the nonce.
3. Record, in a second short transaction fenced by the lease_token (a dispatcher whose lease ended and whose rows
   were claimed again changes nothing): sent (message id; the others of a burst 'coalesced' into it; the DM channel
   id cached on the user), retry later with exponential backoff (or the server's retry_after; one next attempt for
   the whole group), DMs closed (the user is marked 'closed', the rows parked and their group dissolved), or failed.

A crash between 1 and 3 leaves the rows leased: they come back when the lease ends, claimed through their group's
leader, and are sent again as exactly the same group with the same nonce, which Discord (enforce_nonce) answers with
the first message instead of a second DM. Rows that arrived or became due meanwhile form groups of their own.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta
from typing import Any
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import asyncpg
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel.ext.asyncio.session import AsyncSession

from core import metrics
from core.db.database import Database, raw_connection
from core.db.types import utcnow
from core.notifications.limiter import Limiter
from core.notifications.notifier import (
    Delivery,
    DMsClosed,
    Failed,
    Notifier,
    OutgoingMessage,
    RetryLater,
    Sent,
)

log = logging.getLogger(__name__)

REASON = "notifications.dispatch"
COALESCED_BODY_LIMIT = 1900  # a Discord message's content is at most 2,000 characters
_ITEM_LIMIT = 300

# A grouped row is claimed only through its group's leader (group_id = id): SKIP LOCKED takes the leader, then the
# rest of the group is locked behind it (every member moves with its leader, so they are due together). Two claimants
# can't split a group, and a group is never re-sent with fewer, more or other rows than the nonce was first sent with.
_CLAIM = """
WITH due AS (
    SELECT id FROM notifications
    WHERE status = 'pending' AND next_attempt_at <= $1 AND (group_id IS NULL OR group_id = id)
    ORDER BY next_attempt_at, id
    LIMIT $2
    FOR UPDATE SKIP LOCKED
), members AS (
    SELECT n.id FROM notifications n JOIN due ON n.group_id = due.id
    WHERE n.status = 'pending' AND n.id <> due.id
    ORDER BY n.id
    FOR UPDATE OF n
), leased AS (
    UPDATE notifications n SET next_attempt_at = $3, lease_token = $4
    WHERE n.id IN (SELECT id FROM due UNION ALL SELECT id FROM members)
    RETURNING n.id, n.user_id, n.kind, n.title, n.body, n.attempts, n.group_id
)
SELECT l.id, l.user_id, l.kind, l.title, l.body, l.attempts, l.group_id,
       u.discord_id, u.console_handle, u.dm_channel_id, u.dm_status, u.alerts_muted_until,
       u.quiet_hours_start, u.quiet_hours_end, u.timezone, u.deleted_at
FROM leased l JOIN users u ON u.id = l.user_id
ORDER BY l.id
"""

# One statement applies every row's outcome. `AND status = 'pending' AND lease_token = $10` fences it: a dispatcher
# whose lease ended (and whose rows another claimed since) changes nothing.
_APPLY = """
UPDATE notifications n SET
    status = x.status,
    attempts = n.attempts + x.inc,
    next_attempt_at = CASE WHEN x.park THEN 'infinity'::timestamptz ELSE coalesce(x.next_at, n.next_attempt_at) END,
    last_error = coalesce(left(x.err, 1000), n.last_error),
    sent_at = CASE WHEN x.status = 'sent' THEN $9::timestamptz END,
    discord_message_id = coalesce(x.mid, n.discord_message_id),
    coalesced_into = x.into_id,
    group_id = CASE WHEN x.ungroup THEN NULL ELSE n.group_id END
FROM unnest($1::bigint[], $2::text[], $3::int[], $4::timestamptz[], $5::bool[], $6::text[], $7::bigint[], $8::bigint[],
            $11::bool[])
     AS x(id, status, inc, next_at, park, err, mid, into_id, ungroup)
WHERE n.id = x.id AND n.status = 'pending' AND n.lease_token = $10
"""

# New groups, persisted in the claim's transaction: every row of a burst carries its leader's id (the nonce).
_GROUP = """
UPDATE notifications n SET group_id = x.group_id
FROM unnest($1::bigint[], $2::bigint[]) AS x(id, group_id)
WHERE n.id = x.id AND n.lease_token = $3
"""

# Users rows are locked in id order first (two dispatchers recording at once can't deadlock on them), and with
# FOR NO KEY UPDATE, as the UPDATE itself would: it doesn't block enqueue's foreign-key checks.
_DM_OPENED = """
WITH locked AS (SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE)
UPDATE users u SET dm_status = 'open', dm_channel_id = coalesce(x.channel, u.dm_channel_id), updated_at = $3
FROM unnest($1::uuid[], $2::bigint[]) AS x(id, channel), locked
WHERE u.id = x.id AND locked.id = u.id
  AND (u.dm_status <> 'open' OR u.dm_channel_id IS DISTINCT FROM coalesce(x.channel, u.dm_channel_id))
"""

_DM_CLOSED = """
WITH locked AS (SELECT id FROM users WHERE id = ANY($1::uuid[]) ORDER BY id FOR NO KEY UPDATE)
UPDATE users u SET dm_status = 'closed', updated_at = $2
FROM locked WHERE u.id = locked.id AND u.dm_status <> 'closed'
"""

# Errors that mean the database (or the connection to it) failed, not the dispatcher: the round is retried.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    SQLAlchemyError,
)


# --- holding back: mute and quiet hours ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=512)
def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo("UTC")


def _local(day: date, at: time, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, at.replace(tzinfo=None), tzinfo=zone)


def quiet_hours_end(at: datetime, start: time, end: time, timezone: str) -> datetime | None:
    """When the quiet hours that contain `at` end, or None if `at` is outside them. start == end means none.

    Quiet hours are wall-clock times in the user's timezone; start > end spans midnight (e.g. 22:00-07:00).
    """
    if start == end:
        return None
    zone = _zone(timezone)
    local = at.astimezone(zone)
    now, start, end = local.time().replace(tzinfo=None), start.replace(tzinfo=None), end.replace(tzinfo=None)
    if start < end:
        until = _local(local.date(), end, zone) if start <= now < end else None
    elif now >= start:
        until = _local(local.date() + timedelta(days=1), end, zone)
    elif now < end:
        until = _local(local.date(), end, zone)
    else:
        until = None
    return until if until is not None and until > at else None


def hold_until(
    now: datetime,
    *,
    kind: str,
    muted_until: datetime | None,
    quiet_start: time | None,
    quiet_end: time | None,
    timezone: str,
) -> datetime | None:
    """When a notification of `kind` may go out, if not now: the later of the mute (alerts only) and quiet hours."""
    at = now
    for _ in range(4):  # a mute may end inside quiet hours and the reverse; settles in a step or two
        moved = False
        if kind == "alert" and muted_until is not None and muted_until > at:
            at, moved = muted_until, True
        if quiet_start is not None and quiet_end is not None:
            quiet = quiet_hours_end(at, quiet_start, quiet_end, timezone)
            if quiet is not None:
                at, moved = quiet, True
        if not moved:
            break
    return at if at > now else None


# --- the dispatcher -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: int
    user_id: UUID
    kind: str
    title: str
    body: str
    attempts: int
    group_id: int | None = None


@dataclass(frozen=True)
class Batch:
    """A claimed batch: one message per group (a user's burst coalesced), and how many rows were held back instead.

    `lease_token` is the claim's: only a record with it changes the rows (a later claimant's token replaces it).
    """

    messages: list[tuple[OutgoingMessage, list[Row]]]
    held: int = 0
    parked: int = 0
    lease_token: UUID | None = None


@dataclass
class DispatchStats:
    claimed: int = 0
    held: int = 0  # mute or quiet hours: moved to when they end
    parked: int = 0  # DMs closed: kept until mark_dm_open
    messages_sent: int = 0
    notifications_sent: int = 0  # including the ones coalesced into a sent message
    retried: int = 0
    rate_limited: int = 0  # retries the server asked for with retry_after (a 429)
    failed: int = 0
    dms_closed: int = 0

    def add(self, other: DispatchStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def export(self) -> None:
        """Add this round's outcomes to the process's metrics (once per round, never per row)."""
        for outcome, count in (
            ("sent", self.notifications_sent),
            ("retried", self.retried),
            ("failed", self.failed),
            ("parked", self.parked),
            ("held", self.held),
        ):
            if count:
                metrics.NOTIFICATIONS.labels(outcome).inc(count)
        if self.messages_sent:
            metrics.NOTIFICATION_MESSAGES_SENT.inc(self.messages_sent)
        if self.rate_limited:
            metrics.NOTIFICATIONS_RATE_LIMITED.inc(self.rate_limited)


@dataclass
class _Updates:
    ids: list[int] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    inc: list[int] = field(default_factory=list)
    next_at: list[datetime | None] = field(default_factory=list)
    park: list[bool] = field(default_factory=list)
    err: list[str | None] = field(default_factory=list)
    mid: list[int | None] = field(default_factory=list)
    into: list[int | None] = field(default_factory=list)
    ungroup: list[bool] = field(default_factory=list)

    def add(
        self,
        row_id: int,
        status: str = "pending",
        *,
        inc: int = 1,
        next_at: datetime | None = None,
        park: bool = False,
        err: str | None = None,
        mid: int | None = None,
        into: int | None = None,
        ungroup: bool = False,
    ) -> None:
        self.ids.append(row_id)
        self.status.append(status)
        self.inc.append(inc)
        self.next_at.append(next_at)
        self.park.append(park)
        self.err.append(err)
        self.mid.append(mid)
        self.into.append(into)
        self.ungroup.append(ungroup)

    async def apply(self, conn: asyncpg.Connection, now: datetime, lease_token: UUID) -> None:
        if self.ids:
            await conn.execute(
                _APPLY,
                self.ids,
                self.status,
                self.inc,
                self.next_at,
                self.park,
                self.err,
                self.mid,
                self.into,
                now,
                lease_token,
                self.ungroup,
            )


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def compose(rows: Sequence[Row]) -> tuple[str, str]:
    """Title and body of the one message for a burst: each notification on its own line, oldest first."""
    if len(rows) == 1:
        return rows[0].title, rows[0].body
    title = f"{len(rows)} notifications"
    lines: list[str] = []
    used = 0
    for i, row in enumerate(rows):
        line = "• " + _clip(f"{row.title}: {row.body}", _ITEM_LIMIT)
        rest = len(rows) - i - 1
        tail = f"… and {rest} more" if rest else ""
        if used + len(line) + 1 + len(tail) > COALESCED_BODY_LIMIT:
            lines.append(f"… and {len(rows) - i} more")
            break
        lines.append(line)
        used += len(line) + 1
    return title, "\n".join(lines)


class Dispatcher:
    """Delivers the outbox. Several may run at once (in one process or many): SKIP LOCKED keeps them apart.

    `limiter` paces every Discord request: pass one shared limiter to every dispatcher (and every other sender to
    Discord) in the process. `clock` is injectable for tests; the database's own clock is never used for due times.
    """

    def __init__(
        self,
        db: Database,
        notifier: Notifier,
        limiter: Limiter,
        *,
        clock: Callable[[], datetime] = utcnow,
        batch_size: int = 100,
        lease: timedelta = timedelta(seconds=60),
        base_backoff_s: float = 2.0,
        max_backoff_s: float = 900.0,
        max_attempts: int = 25,
        coalesce: bool = True,
    ) -> None:
        self.db, self.notifier, self.limiter, self.clock = db, notifier, limiter, clock
        self.batch_size, self.lease = batch_size, lease
        self.base_backoff_s, self.max_backoff_s, self.max_attempts = base_backoff_s, max_backoff_s, max_attempts
        self.coalesce = coalesce
        self._wake = asyncio.Event()

    def backoff(self, attempts: int, retry_after: float | None) -> timedelta:
        """Delay before the next try after `attempts` failed ones: retry_after if the server gave one, else
        exponential from base_backoff_s, capped at max_backoff_s, with +-20% jitter so a burst doesn't return in step.
        """
        if retry_after is not None and retry_after >= 0:
            return timedelta(seconds=min(retry_after, self.max_backoff_s))
        delay = min(self.base_backoff_s * 2 ** max(attempts - 1, 0), self.max_backoff_s)
        return timedelta(seconds=delay * random.uniform(0.8, 1.2))  # noqa: S311 -- jitter, not security

    def _hold(self, now: datetime, row: Row, rec: Any) -> datetime | None:
        return hold_until(
            now,
            kind=row.kind,
            muted_until=rec["alerts_muted_until"],
            quiet_start=rec["quiet_hours_start"],
            quiet_end=rec["quiet_hours_end"],
            timezone=rec["timezone"],
        )

    async def claim(self) -> Batch:
        """Lease due rows and group them into messages, the groups persisted in the same transaction.

        A row claimed with a group (a crash or a retry since its group was first sent) goes out again as exactly
        that group, with the same nonce, or is held or parked with the whole group; rows without one form new groups.
        """
        now = self.clock()
        token = uuid4()
        groups: list[list[tuple[Row, Any]]] = []
        held = parked = 0
        async with self.db.system_scope(REASON) as session:
            conn = await raw_connection(session)
            records = await conn.fetch(_CLAIM, now, self.batch_size, now + self.lease, token)
            holds = _Updates()
            existing: dict[int, list[tuple[Row, Any]]] = {}
            by_user: dict[UUID, list[tuple[Row, Any]]] = {}
            for rec in records:
                row = Row(
                    rec["id"], rec["user_id"], rec["kind"], rec["title"], rec["body"], rec["attempts"], rec["group_id"]
                )
                if rec["deleted_at"] is not None:
                    holds.add(row.id, "failed", inc=0, err="the user was deleted")
                    continue
                if rec["dm_status"] == "closed":
                    holds.add(row.id, inc=0, park=True)
                    parked += 1
                    continue
                if row.group_id is not None:
                    existing.setdefault(row.group_id, []).append((row, rec))
                    continue
                until = self._hold(now, row, rec)
                if until is not None:
                    holds.add(row.id, inc=0, next_at=until)
                    held += 1
                    continue
                by_user.setdefault(row.user_id, []).append((row, rec))
            for entries in existing.values():
                # A group waits as one: until the last of its rows may go out.
                untils = [u for u in (self._hold(now, row, rec) for row, rec in entries) if u is not None]
                if untils:
                    for row, _ in entries:
                        holds.add(row.id, inc=0, next_at=max(untils))
                    held += len(entries)
                    continue
                groups.append(sorted(entries, key=lambda e: e[0].id))
            new_ids: list[int] = []
            new_groups: list[int] = []
            for entries in by_user.values():
                for group in [entries] if self.coalesce else [[e] for e in entries]:
                    leader = group[0][0].id
                    new_ids.extend(row.id for row, _ in group)
                    new_groups.extend(leader for _ in group)
                    groups.append([(replace(row, group_id=leader), rec) for row, rec in group])
            if new_ids:
                await conn.execute(_GROUP, new_ids, new_groups, token)
            await holds.apply(conn, now, token)
        messages: list[tuple[OutgoingMessage, list[Row]]] = []
        for group in sorted(groups, key=lambda g: g[0][0].id):
            rows = [row for row, _ in group]
            rec = group[0][1]
            title, body = compose(rows)
            message = OutgoingMessage(
                outbox_id=rows[0].id,
                user_id=rows[0].user_id,
                title=title,
                body=body,
                discord_id=rec["discord_id"],
                dm_channel_id=rec["dm_channel_id"],
                console_handle=rec["console_handle"],
                kind=rows[0].kind if len({r.kind for r in rows}) == 1 else "system",
                notification_ids=tuple(r.id for r in rows),
            )
            messages.append((message, rows))
        return Batch(messages, held, parked, token)

    async def _send(self, message: OutgoingMessage) -> Delivery:
        await self.limiter.acquire(message.requests)
        try:
            return await self.notifier.send(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 -- a notifier bug or transport error: retry, don't stop the outbox
            log.warning("notifications: notifier raised for #%d: %r", message.outbox_id, exc)
            return RetryLater(f"{type(exc).__name__}: {exc}"[:1000])

    async def deliver(self, batch: Batch) -> list[Delivery]:
        return list(await asyncio.gather(*(self._send(message) for message, _ in batch.messages)))

    async def record(self, batch: Batch, deliveries: Sequence[Delivery]) -> DispatchStats:
        """Apply each message's outcome to its rows, fenced by the batch's lease (see `Batch`).

        A group keeps its rows and its nonce until it ends (sent or failed): every row of a message gets the same
        next attempt, so the group comes back due as one. Only DMs closed, a definite "not delivered", dissolves it.
        """
        now = self.clock()
        stats = DispatchStats(held=batch.held, parked=batch.parked)
        updates = _Updates()
        opened: dict[UUID, int | None] = {}
        closed: set[UUID] = set()
        for (message, rows), delivery in zip(batch.messages, deliveries, strict=True):
            stats.claimed += len(rows)
            primary = rows[0]
            if isinstance(delivery, Sent):
                updates.add(primary.id, "sent", mid=delivery.message_id)
                for row in rows[1:]:
                    updates.add(row.id, "coalesced", into=primary.id)
                stats.messages_sent += 1
                stats.notifications_sent += len(rows)
                if message.discord_id is not None:
                    channel = delivery.dm_channel_id
                    opened[message.user_id] = channel if channel is not None else opened.get(message.user_id)
            elif isinstance(delivery, RetryLater) and delivery.retry_after is not None:
                # The server said when (a 429): not the message's fault, so it doesn't count toward giving up.
                at = now + self.backoff(0, delivery.retry_after)
                for row in rows:
                    updates.add(row.id, inc=0, next_at=at, err=delivery.error)
                stats.retried += len(rows)
                stats.rate_limited += 1
            elif isinstance(delivery, RetryLater):
                attempts = max(row.attempts for row in rows) + 1
                if attempts >= self.max_attempts:
                    for row in rows:
                        updates.add(row.id, "failed", err=f"gave up after {attempts} attempts: {delivery.error}")
                    stats.failed += len(rows)
                else:
                    at = now + self.backoff(attempts, delivery.retry_after)
                    for row in rows:
                        updates.add(row.id, next_at=at, err=delivery.error)
                    stats.retried += len(rows)
            elif isinstance(delivery, DMsClosed):
                for row in rows:
                    updates.add(row.id, park=True, err=delivery.error, ungroup=True)
                closed.add(message.user_id)
                stats.dms_closed += 1
                stats.parked += len(rows)
            elif isinstance(delivery, Failed):
                for row in rows:
                    updates.add(row.id, "failed", err=delivery.error)
                stats.failed += len(rows)
        token = batch.lease_token
        if token is None:
            raise ValueError("record() needs a batch from claim(): its lease_token fences the outcome")
        opened_users = sorted(opened)
        async with self.db.system_scope(REASON) as session:
            conn = await raw_connection(session)
            await updates.apply(conn, now, token)
            if opened_users:
                await conn.execute(_DM_OPENED, opened_users, [opened[u] for u in opened_users], now)
            if closed:
                await conn.execute(_DM_CLOSED, sorted(closed), now)
        for user in sorted(closed):
            log.info("notifications: user %s has DMs closed; their notifications are held until they're back", user)
        return stats

    async def dispatch_once(self) -> DispatchStats:
        """One claim-deliver-record round: the periodic job. Returns what happened (claimed == 0: nothing due)."""
        batch = await self.claim()
        if not batch.messages:
            stats = DispatchStats(held=batch.held, parked=batch.parked)
        else:
            deliveries = await self.deliver(batch)
            stats = await self.record(batch, deliveries)
        stats.export()
        return stats

    def wake(self) -> None:
        """Tell a running `run` loop there is new work (e.g. the alert engine after committing a trigger, in the same
        process), so it doesn't wait out its idle interval. Safe to call from any task, any number of times."""
        self._wake.set()

    async def run(self, stop: asyncio.Event, *, idle_s: float = 1.0) -> DispatchStats:
        """Dispatch until `stop` is set: back to back while there is work; when the outbox is idle, again after
        `idle_s` or at `wake()`, whichever comes first. Cancelling it mid-delivery is safe (the rows' lease ends).

        A database error is logged and retried after `idle_s`, never fatal: the outbox keeps its rows.
        """
        total = DispatchStats()
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                self._wake.clear()
                try:
                    stats = await self.dispatch_once()
                except DATABASE_ERRORS as exc:
                    log.warning("notifications: dispatch round failed, retrying in %.1f s: %r", idle_s, exc)
                    stats = DispatchStats()
                total.add(stats)
                if stats.claimed == 0 and stats.held == 0 and stats.parked == 0:
                    waking = asyncio.ensure_future(self._wake.wait())
                    try:
                        await asyncio.wait({stopping, waking}, timeout=idle_s, return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        waking.cancel()
        finally:
            stopping.cancel()
        return total


async def dispatch_once(
    db: Database, notifier: Notifier, limiter: Limiter, *, clock: Callable[[], datetime] = utcnow
) -> DispatchStats:
    """One dispatcher round with default settings: for a periodic scheduler job."""
    return await Dispatcher(db, notifier, limiter, clock=clock).dispatch_once()


# --- DMs closed: back at the user's next interaction ------------------------------------------------------------------


@dataclass(frozen=True)
class Missed:
    id: int
    kind: str
    title: str
    body: str
    created_at: datetime


_REOPEN_USER = "UPDATE users SET dm_status = 'unknown', updated_at = $2 WHERE id = $1 AND dm_status = 'closed'"
_RELEASE = """
UPDATE notifications SET next_attempt_at = $2
WHERE user_id = $1 AND status = 'pending' AND next_attempt_at = 'infinity'
RETURNING id, kind, title, body, created_at
"""


async def mark_dm_open(session: AsyncSession, user_id: UUID, now: datetime | None = None) -> list[Missed]:
    """Clear a user's DMs-closed mark and make their parked notifications due again; what they missed, oldest first.

    Call it at the user's next interaction (in system_scope: users can't change their own dm_status), and tell them
    what they missed in the reply. The mark becomes 'unknown' (not 'open': we learn that at the next delivery), so
    the dispatcher tries again; closed again means parked again. Nothing parked: an empty list. Never commits.
    """
    conn = await raw_connection(session)
    at = now or utcnow()
    await conn.execute(_REOPEN_USER, user_id, at)
    rows = await conn.fetch(_RELEASE, user_id, at)
    missed = [Missed(r["id"], r["kind"], r["title"], r["body"], r["created_at"]) for r in rows]
    return sorted(missed, key=lambda m: (m.created_at, m.id))
