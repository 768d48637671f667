"""Coalesced groups survive a crash as they were sent, outcomes are fenced by the lease, and the dispatcher survives
concurrent recorders and dead pooled connections."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import asyncpg
import pytest

from core.db.database import Database
from core.notifications.dispatcher import Batch, Dispatcher
from core.notifications.limiter import TokenBucket, Unpaced
from core.notifications.notifier import Failed, RateLimitedNotifier, RetryLater, Sent
from core.notifications.outbox import enqueue
from tests.conftest import PgCluster
from tests.core.notifications.conftest import Clock, Outbox, drain

LEASE = timedelta(seconds=60)


def _visible(fake: RateLimitedNotifier) -> list[tuple[int, ...]]:
    return [v.message.notification_ids for v in fake.deliveries]


def _once_each(fake: RateLimitedNotifier, ids: list[int]) -> None:
    seen = Counter(i for message in _visible(fake) for i in message)
    assert {i: seen[i] for i in ids} == dict.fromkeys(ids, 1), _visible(fake)


async def test_a_row_arriving_after_a_crash_is_not_coalesced_behind_a_nonce_already_answered(
    db: Database, outbox: Outbox, clock: Clock
) -> None:
    user = await outbox.user(1)
    r1, r2 = await outbox.add(user, "k1"), await outbox.add(user, "k2")
    fake = RateLimitedNotifier()  # dedupes by nonce, as Discord does with enforce_nonce
    crashed = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE)
    await crashed.deliver(await crashed.claim())  # Discord shows r1+r2 (nonce r1), then the process dies
    r3 = await outbox.add(user, "k3")  # a new alert for the same user while the lease runs

    clock.advance(seconds=61)
    await drain(Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE))

    assert _visible(fake) == [(r1, r2), (r3,)] and fake.nonce_repeats == 1
    _once_each(fake, [r1, r2, r3])
    rows = {r["id"]: r for r in await outbox.rows()}
    assert rows[r1]["status"] == "sent" and rows[r1]["discord_message_id"] == fake.deliveries[0].message_id
    assert rows[r2]["status"] == "coalesced" and rows[r2]["coalesced_into"] == r1
    assert rows[r3]["status"] == "sent" and rows[r3]["discord_message_id"] == fake.deliveries[1].message_id
    assert [rows[i]["group_id"] for i in (r1, r2, r3)] == [r1, r1, r3]


async def test_an_older_row_due_after_a_crash_does_not_resend_a_delivered_group(
    db: Database, outbox: Outbox, clock: Clock
) -> None:
    user = await outbox.user(1)
    fake = RateLimitedNotifier()
    dispatcher = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE, base_backoff_s=10)
    r0 = await outbox.add(user, "k0")
    fake.fail_next(user, 1)
    assert (await dispatcher.dispatch_once()).retried == 1  # r0: a 503, back off ~10 s
    r1, r2 = await outbox.add(user, "k1"), await outbox.add(user, "k2")
    batch = await dispatcher.claim()  # r1+r2, r0 not due yet
    assert [[r.id for r in rows] for _, rows in batch.messages] == [[r1, r2]]
    await dispatcher.deliver(batch)  # delivered, then the process dies before recording

    clock.advance(seconds=61)  # r0's backoff and the lease have both ended
    await drain(dispatcher)

    assert sorted(_visible(fake)) == [(r0,), (r1, r2)] and fake.nonce_repeats == 1
    _once_each(fake, [r0, r1, r2])
    assert {r["status"] for r in await outbox.rows()} == {"sent", "coalesced"}


async def test_a_group_is_reclaimed_whole_even_past_the_batch_size(db: Database, outbox: Outbox, clock: Clock) -> None:
    user = await outbox.user(1)
    ids = [await outbox.add(user, f"k{i}") for i in range(3)]
    fake = RateLimitedNotifier()
    crashed = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE)
    await crashed.deliver(await crashed.claim())
    clock.advance(seconds=61)
    small = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE, batch_size=1)
    stats = await drain(small)
    assert stats.messages_sent == 1 and stats.notifications_sent == 3
    assert _visible(fake) == [tuple(ids)] and fake.nonce_repeats == 1


async def test_a_retried_group_comes_back_as_the_same_group(db: Database, outbox: Outbox, clock: Clock) -> None:
    user = await outbox.user(1)
    r1, r2 = await outbox.add(user, "k1"), await outbox.add(user, "k2")
    fake = RateLimitedNotifier()
    fake.fail_next(user, 1)  # a 503: maybe delivered, maybe not; the nonce stays with exactly these rows
    dispatcher = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE)
    assert (await dispatcher.dispatch_once()).retried == 2
    rows = await outbox.rows()
    assert len({r["next_attempt_at"] for r in rows}) == 1 and {r["group_id"] for r in rows} == {r1}
    r3 = await outbox.add(user, "k3")
    clock.advance(minutes=1)
    await drain(dispatcher)
    assert sorted(_visible(fake)) == [(r1, r2), (r3,)]


async def test_a_late_record_cannot_overwrite_the_next_claimants_outcome(
    db: Database, outbox: Outbox, clock: Clock
) -> None:
    user = await outbox.user(1)
    nid = await outbox.add(user, "k")
    fake = RateLimitedNotifier()
    slow = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE)
    stale = await slow.claim()  # then stalls past its lease
    clock.advance(seconds=61)
    fast = Dispatcher(db, fake, Unpaced(), clock=clock, lease=LEASE)
    fresh = await fast.claim()
    assert fresh.lease_token != stale.lease_token and [m.outbox_id for m, _ in fresh.messages] == [nid]

    await slow.record(stale, [RetryLater("timeout")])  # the stalled dispatcher wakes up
    [row] = await outbox.rows()
    assert row["status"] == "pending" and row["attempts"] == 0 and row["last_error"] is None
    assert row["next_attempt_at"] == clock() + LEASE and row["lease_token"] == fresh.lease_token

    await fast.record(fresh, await fast.deliver(fresh))
    await slow.record(stale, [Failed("400 Bad Request")])
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["last_error"] is None and len(fake.deliveries) == 1


async def test_two_dispatchers_recording_the_same_users_in_opposite_orders_do_not_deadlock(
    pg: PgCluster, db_name: str, db: Database, outbox: Outbox, clock: Clock
) -> None:
    admin = await asyncpg.connect(pg.superuser_url, database=db_name)
    try:
        # The plan a large users table gets: a nested loop driven by the ids in the order given, which locks them
        # in that order. (A small table's hash join would lock in the table's order and hide the problem.)
        for setting in ("enable_hashjoin", "enable_mergejoin", "enable_seqscan"):
            await admin.execute(f"ALTER DATABASE {db_name} SET {setting} = off")
        users = [await outbox.user(i) for i in range(9)]
        for prefix in "ab":
            for i, user in enumerate(users):
                await outbox.add(user, f"{prefix}{i}")
        first = Dispatcher(db, RateLimitedNotifier(), Unpaced(), clock=clock, batch_size=len(users))
        second = Dispatcher(db, RateLimitedNotifier(), Unpaced(), clock=clock, batch_size=len(users))
        a, b = await first.claim(), await second.claim()
        assert [m.user_id for m, _ in a.messages] == [m.user_id for m, _ in b.messages] == users
        b = Batch(list(reversed(b.messages)), b.held, b.parked, b.lease_token)  # the same users, the other way
        sent_a = [Sent(10 * i, 7000 + i) for i in range(len(users))]
        sent_b = [Sent(10 * i + 1, 8000 + i) for i in range(len(users))]

        # Hold the middle user, so both recorders stop there with whatever they locked before it.
        hold = admin.transaction()
        await hold.start()
        await admin.execute("SELECT 1 FROM tradedesk.users WHERE id = $1 FOR NO KEY UPDATE", users[len(users) // 2])
        recording = asyncio.gather(first.record(a, sent_a), second.record(b, sent_b))
        watcher = await pg.admin()  # pg_stat_activity is a snapshot inside a transaction: watch from outside it
        try:
            for _ in range(250):
                waiting = await watcher.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
                    " AND query LIKE '%UPDATE users%'",
                    db_name,
                )
                if waiting == 2:
                    break
                await asyncio.sleep(0.02)
        finally:
            await watcher.close()
        assert waiting == 2
        await hold.rollback()
        stats = await asyncio.wait_for(recording, 10)
        assert [s.messages_sent for s in stats] == [len(users), len(users)]
    finally:
        await admin.close()
    assert {r["status"] for r in await outbox.rows()} == {"sent"}
    assert {(await outbox.users(u))["dm_status"] for u in users} == {"open"}


async def test_the_dispatcher_survives_its_pooled_connections_being_killed(
    pg: PgCluster, db_name: str, db_url: str, db: Database, outbox: Outbox
) -> None:
    user = await outbox.user(1)
    await outbox.add(user, "k0")
    fake = RateLimitedNotifier()
    stop = asyncio.Event()
    dispatcher = Dispatcher(db, fake, TokenBucket())
    task = asyncio.create_task(dispatcher.run(stop, idle_s=0.05))

    async def delivered(n: int) -> None:
        for _ in range(500):
            assert not task.done(), task.exception()
            if len(fake.deliveries) >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(fake.deliveries)} deliveries, expected {n}")

    try:
        await delivered(1)
        for n in range(1, 4):
            admin = await pg.admin()
            try:
                killed = await admin.fetchval(
                    "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = $1 AND pid <> pg_backend_pid()) t",
                    db_name,
                )
            finally:
                await admin.close()
            assert killed >= 1
            await asyncio.sleep(0.2)  # the dispatcher runs into its dead connections
            writer = Database(db_url, pool_size=1, max_overflow=0)  # fresh: only the dispatcher's pool is dead
            try:
                async with writer.system_scope("test.enqueue") as s:
                    await enqueue(s, user, "alert", f"k{n}", f"Alert {n}", "after the kill")
            finally:
                await writer.dispose()
            dispatcher.wake()
            await delivered(n + 1)
        stop.set()
        await asyncio.wait_for(task, 5)
        # A kill may land between a delivery and its record: that row is sent again (same nonce) after its lease.
        assert len(fake.deliveries) == len({v.message.outbox_id for v in fake.deliveries}) == 4
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(task, return_exceptions=True), 5)


async def test_a_connection_killed_mid_round_does_not_stop_the_dispatcher(
    pg: PgCluster, db_name: str, db: Database, outbox: Outbox
) -> None:
    user = await outbox.user(1)
    await outbox.add(user, "k0")
    fake = RateLimitedNotifier()
    stop = asyncio.Event()
    dispatcher = Dispatcher(db, fake, TokenBucket())
    admin = await asyncpg.connect(pg.superuser_url, database=db_name)
    try:
        # The claim blocks on the table lock after the scope's set_config: its own asyncpg query is the one that
        # finds its backend gone (asyncpg's InterfaceError, not wrapped by SQLAlchemy).
        lock = admin.transaction()
        await lock.start()
        await admin.execute("LOCK TABLE tradedesk.notifications IN ACCESS EXCLUSIVE MODE")
        task = asyncio.create_task(dispatcher.run(stop, idle_s=0.05))
        watcher = await pg.admin()  # pg_stat_activity is a snapshot inside a transaction: watch from outside it
        try:
            for _ in range(250):
                pids = await watcher.fetch(
                    "SELECT pid FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'"
                    " AND query LIKE '%SKIP LOCKED%'",
                    db_name,
                )
                if pids:
                    break
                await asyncio.sleep(0.02)
        finally:
            await watcher.close()
        assert pids, "the claim never blocked"
        for pid in pids:
            await admin.execute("SELECT pg_terminate_backend($1)", pid["pid"])
        await asyncio.sleep(0.1)
        await lock.rollback()
        for _ in range(250):
            assert not task.done(), task.exception()
            if fake.deliveries:
                break
            await asyncio.sleep(0.02)
        assert len(fake.deliveries) == 1
        stop.set()
        assert (await asyncio.wait_for(task, 5)).messages_sent == 1
    finally:
        stop.set()
        await admin.close()


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    ],
)
async def test_a_raw_asyncpg_connection_error_is_retried_not_fatal(
    db: Database, outbox: Outbox, error: Exception
) -> None:
    user = await outbox.user(1)
    await outbox.add(user, "k0")
    fake = RateLimitedNotifier()
    dispatcher = Dispatcher(db, fake, TokenBucket())
    claim, failures = dispatcher.claim, [error, error]

    async def flaky_claim() -> Batch:
        if failures:
            raise failures.pop()  # as a raw asyncpg query on a dead pooled connection raises it
        return await claim()

    dispatcher.claim = flaky_claim  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(dispatcher.run(stop, idle_s=0.01))
    for _ in range(250):
        assert not task.done(), task.exception()
        if fake.deliveries:
            break
        await asyncio.sleep(0.02)
    stop.set()
    assert (await asyncio.wait_for(task, 5)).messages_sent == 1
