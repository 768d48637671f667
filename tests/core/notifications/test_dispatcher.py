"""The outbox dispatcher on the real database, delivering into the rate-limited fake of Discord's DM path."""

from __future__ import annotations

import asyncio
import io
from datetime import UTC, datetime, time, timedelta
from uuid import UUID, uuid4
from zoneinfo import ZoneInfo

import pytest

from core.db.database import Database, raw_connection
from core.notifications.dispatcher import Dispatcher, hold_until, mark_dm_open, quiet_hours_end
from core.notifications.limiter import TokenBucket, Unpaced
from core.notifications.notifier import (
    ConsoleNotifier,
    Delivery,
    Failed,
    OutgoingMessage,
    RateLimitedNotifier,
    RetryLater,
)
from core.notifications.outbox import enqueue
from tests.core.notifications.conftest import Clock, Outbox, drain


async def test_enqueue_is_idempotent_per_user_and_dedupe_key(db: Database, outbox: Outbox) -> None:
    user = await outbox.user(1)
    first = await outbox.add(user, "alert:1:fired")
    async with db.system_scope("test.enqueue") as s:
        assert await enqueue(s, user, "alert", "alert:1:fired", "again", "again") is None
        with pytest.raises(ValueError, match="kind"):
            await enqueue(s, user, "spam", "k", "t", "b")
    rows = await outbox.rows()
    assert [r["id"] for r in rows] == [first]
    assert rows[0]["status"] == "pending" and rows[0]["title"] == "Alert alert:1:fired"
    assert rows[0]["payload"] == {"key": "alert:1:fired"} and rows[0]["attempts"] == 0


async def test_enqueue_rolls_back_with_its_transaction_and_can_wait(db: Database, outbox: Outbox, clock: Clock) -> None:
    user = await outbox.user(1)

    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with db.system_scope("test.enqueue") as s:
            assert await enqueue(s, user, "fill", "f1", "Filled", "1 AAPL at 200") is not None
            raise Boom
    assert await outbox.rows() == []
    async with db.system_scope("test.enqueue") as s:
        later = await enqueue(s, user, "system", "s1", "Later", "x" * 5000, not_before=clock() + timedelta(hours=1))
    [row] = await outbox.rows()
    assert row["id"] == later and len(row["body"]) == 4000 and row["body"].endswith("…")
    fake = RateLimitedNotifier()
    dispatcher = Dispatcher(db, fake, TokenBucket(), clock=clock)
    assert (await dispatcher.dispatch_once()).claimed == 0
    clock.advance(hours=1)
    assert (await dispatcher.dispatch_once()).messages_sent == 1


async def test_300_notifications_for_50_users_each_once_and_no_429(db: Database, outbox: Outbox) -> None:
    # Half the users have no cached DM channel: their first message costs two requests, paced as two.
    users = [await outbox.user(i, channel=i % 2 == 0) for i in range(50)]
    for i in range(6):
        for u, user in enumerate(users):
            await outbox.add(user, f"a{u}-{i}")
    fake = RateLimitedNotifier(limit_per_s=50)
    dispatcher = Dispatcher(db, fake, TokenBucket(45), coalesce=False, batch_size=100)

    stats = await drain(dispatcher)

    assert fake.http_429 == 0 and fake.peak_per_s <= 50
    assert stats.messages_sent == stats.notifications_sent == 300 and stats.retried == 0
    nonces = [v.message.outbox_id for v in fake.deliveries]
    assert len(nonces) == 300 and len(set(nonces)) == 300 and fake.nonce_repeats == 0
    # A DM channel is opened (one more request) until the first delivery's channel id is cached on the user: only in
    # the first batch, which holds the first two notifications of every user.
    uncached = [v.message for v in fake.deliveries if v.message.dm_channel_id is None]
    assert fake.requests == 300 + len(uncached) and len(uncached) == 50
    rows = await outbox.rows()
    assert {r["status"] for r in rows} == {"sent"} and all(r["discord_message_id"] for r in rows)
    assert all(r["attempts"] == 1 for r in rows)
    for n, user in enumerate(users):
        assert (await outbox.users(user))["dm_channel_id"] is not None, n
        assert (await outbox.users(user))["dm_status"] == "open"


async def test_transient_failures_retry_with_exponential_backoff(db: Database, outbox: Outbox, clock: Clock) -> None:
    user = await outbox.user(1)
    nid = await outbox.add(user, "k")
    fake = RateLimitedNotifier()
    fake.fail_next(user, 2)
    dispatcher = Dispatcher(db, fake, TokenBucket(), clock=clock, base_backoff_s=2.0)

    assert (await dispatcher.dispatch_once()).retried == 1
    [row] = await outbox.rows()
    assert row["status"] == "pending" and row["attempts"] == 1 and "503" in row["last_error"]
    assert timedelta(seconds=1.6) <= row["next_attempt_at"] - clock() <= timedelta(seconds=2.4)
    assert (await dispatcher.dispatch_once()).claimed == 0  # not due yet

    clock.advance(seconds=2.5)
    assert (await dispatcher.dispatch_once()).retried == 1
    [row] = await outbox.rows()
    assert row["attempts"] == 2
    assert timedelta(seconds=3.2) <= row["next_attempt_at"] - clock() <= timedelta(seconds=4.8)

    clock.advance(seconds=5)
    assert (await dispatcher.dispatch_once()).messages_sent == 1
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["attempts"] == 3 and row["sent_at"] == clock()
    assert [v.message.outbox_id for v in fake.deliveries] == [nid]


async def test_a_429_is_retried_after_retry_after(db: Database, outbox: Outbox, clock: Clock) -> None:
    a, b = await outbox.user(1), await outbox.user(2)
    await outbox.add(a, "a")
    await outbox.add(b, "b")
    fake = RateLimitedNotifier(limit_per_s=1)  # the second request in the same second is a 429
    stats = await Dispatcher(db, fake, Unpaced(), clock=clock).dispatch_once()
    assert stats.messages_sent == 1 and stats.rate_limited == 1 and fake.http_429 == 1
    [waiting] = await outbox.rows("status = 'pending'")
    assert "429" in waiting["last_error"] and waiting["attempts"] == 0  # a 429 doesn't count toward giving up
    assert timedelta(0) < waiting["next_attempt_at"] - clock() <= timedelta(seconds=1)


def test_backoff_grows_exponentially_and_is_capped(db: Database) -> None:
    d = Dispatcher(db, RateLimitedNotifier(), Unpaced(), base_backoff_s=2, max_backoff_s=60)
    for attempts, expected in [(1, 2), (2, 4), (3, 8), (5, 32), (9, 60), (30, 60)]:
        assert expected * 0.8 <= d.backoff(attempts, None).total_seconds() <= expected * 1.2
    assert d.backoff(3, 0.25) == timedelta(seconds=0.25)


@pytest.mark.parametrize("crash", ["after_claim", "after_send"])
async def test_a_crash_between_claim_and_outcome_delivers_once_after_the_lease(
    db: Database, outbox: Outbox, clock: Clock, crash: str
) -> None:
    user = await outbox.user(1)
    nid = await outbox.add(user, "k")
    fake = RateLimitedNotifier()  # dedupes by nonce, as Discord does with enforce_nonce
    lease = timedelta(seconds=60)

    crashed = Dispatcher(db, fake, TokenBucket(), clock=clock, lease=lease)
    batch = await crashed.claim()
    if crash == "after_send":
        await crashed.deliver(batch)
    del crashed, batch  # gone without recording the outcome

    [row] = await outbox.rows()
    assert row["status"] == "pending" and row["next_attempt_at"] == clock() + lease
    survivor = Dispatcher(db, fake, TokenBucket(), clock=clock, lease=lease)
    assert (await survivor.dispatch_once()).claimed == 0  # still leased
    clock.advance(seconds=61)
    assert (await survivor.dispatch_once()).messages_sent == 1

    assert [v.message.outbox_id for v in fake.deliveries] == [nid]  # exactly one visible DM
    assert fake.nonce_repeats == (1 if crash == "after_send" else 0)
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["discord_message_id"] == fake.deliveries[0].message_id


async def test_two_dispatchers_at_once_never_deliver_twice(db: Database, outbox: Outbox) -> None:
    users = [await outbox.user(i) for i in range(40)]
    for i in range(5):
        for u, user in enumerate(users):
            await outbox.add(user, f"a{u}-{i}")
    fake = RateLimitedNotifier(limit_per_s=500, latency_s=0.002)
    shared = TokenBucket(450)  # one limiter for both, as in one process
    first = Dispatcher(db, fake, shared, coalesce=False, batch_size=15)
    second = Dispatcher(db, fake, shared, coalesce=False, batch_size=15)

    s1, s2 = await asyncio.gather(drain(first), drain(second))

    assert s1.messages_sent + s2.messages_sent == 200 and s1.messages_sent > 0 and s2.messages_sent > 0
    nonces = [v.message.outbox_id for v in fake.deliveries]
    assert len(nonces) == len(set(nonces)) == 200 and fake.nonce_repeats == 0 and fake.http_429 == 0
    assert {r["status"] for r in await outbox.rows()} == {"sent"}


async def test_a_burst_for_one_user_is_one_message(db: Database, outbox: Outbox) -> None:
    alice, bob = await outbox.user(1), await outbox.user(2)
    ids = [await outbox.add(alice, f"k{i}", title=f"AAPL above {100 + i}") for i in range(5)]
    bob_id = await outbox.add(bob, "b", kind="fill", title="Filled")
    fake = RateLimitedNotifier()

    stats = await Dispatcher(db, fake, TokenBucket()).dispatch_once()

    assert stats.messages_sent == 2 and stats.notifications_sent == 6
    [to_alice] = fake.delivered_to(alice)
    assert to_alice.outbox_id == ids[0] and to_alice.notification_ids == tuple(ids)
    assert to_alice.title == "5 notifications"
    assert [line.split(":")[0] for line in to_alice.body.splitlines()] == [f"• AAPL above {100 + i}" for i in range(5)]
    [to_bob] = fake.delivered_to(bob)
    assert (to_bob.outbox_id, to_bob.title, to_bob.body) == (bob_id, "Filled", "body of b")
    rows = {r["id"]: r for r in await outbox.rows()}
    assert rows[ids[0]]["status"] == "sent"
    for i in ids[1:]:
        assert rows[i]["status"] == "coalesced" and rows[i]["coalesced_into"] == ids[0]


async def test_a_coalesced_body_stays_within_a_discord_message(db: Database, outbox: Outbox) -> None:
    alice = await outbox.user(1)
    for i in range(40):
        await outbox.add(alice, f"k{i}", title="x" * 200)
    fake = RateLimitedNotifier()
    await Dispatcher(db, fake, TokenBucket()).dispatch_once()
    [msg] = fake.deliveries
    assert len(msg.message.body) <= 2000 and msg.message.body.endswith("more")
    assert msg.message.title == "40 notifications"


async def test_mute_holds_alerts_until_it_ends(db: Database, outbox: Outbox, clock: Clock) -> None:
    muted_until = clock() + timedelta(hours=1)
    user = await outbox.user(1, alerts_muted_until=muted_until)
    alert = await outbox.add(user, "alert", kind="alert")
    fill = await outbox.add(user, "fill", kind="fill")
    fake = RateLimitedNotifier()
    dispatcher = Dispatcher(db, fake, TokenBucket(), clock=clock)

    stats = await dispatcher.dispatch_once()
    assert stats.held == 1 and stats.messages_sent == 1
    assert [v.message.outbox_id for v in fake.deliveries] == [fill]  # a mute is for alerts
    [held] = await outbox.rows("id = $1", alert)
    assert held["status"] == "pending" and held["next_attempt_at"] == muted_until and held["attempts"] == 0

    clock.advance(minutes=30)
    assert (await dispatcher.dispatch_once()).claimed == 0
    clock.advance(minutes=31)
    assert (await dispatcher.dispatch_once()).messages_sent == 1
    assert [v.message.outbox_id for v in fake.deliveries] == [fill, alert]


async def test_quiet_hours_in_the_users_timezone_hold_then_deliver(db: Database, outbox: Outbox, clock: Clock) -> None:
    zone = ZoneInfo("Asia/Tokyo")
    local = clock().astimezone(zone)
    start = (local - timedelta(hours=1)).time().replace(second=0, microsecond=0)
    end = (local + timedelta(hours=2)).time().replace(second=0, microsecond=0)
    user = await outbox.user(1, timezone="Asia/Tokyo", quiet_hours_start=start, quiet_hours_end=end)
    nid = await outbox.add(user, "k", kind="fill")
    fake = RateLimitedNotifier()
    dispatcher = Dispatcher(db, fake, TokenBucket(), clock=clock)

    assert (await dispatcher.dispatch_once()).held == 1
    [row] = await outbox.rows()
    ends = row["next_attempt_at"]
    assert ends.astimezone(zone).time() == end and timedelta(hours=1) < ends - clock() <= timedelta(hours=2)
    assert fake.requests == 0

    clock.at = ends
    assert (await dispatcher.dispatch_once()).messages_sent == 1
    assert [v.message.outbox_id for v in fake.deliveries] == [nid]


async def test_dms_closed_is_recorded_and_later_rows_are_kept_not_attempted(
    db: Database, outbox: Outbox, clock: Clock
) -> None:
    closed, other = await outbox.user(1), await outbox.user(2)
    first = await outbox.add(closed, "c1")
    await outbox.add(other, "o1")
    fake = RateLimitedNotifier(closed={closed})
    dispatcher = Dispatcher(db, fake, TokenBucket(), clock=clock)

    stats = await dispatcher.dispatch_once()  # the dispatcher keeps going past the failure
    assert stats.dms_closed == 1 and stats.messages_sent == 1
    assert (await outbox.users(closed))["dm_status"] == "closed"
    [row] = await outbox.rows("id = $1", first)
    assert row["status"] == "pending" and row["parked"] and "50007" in row["last_error"]

    requests = fake.requests
    second = await outbox.add(closed, "c2")
    clock.advance(hours=1)
    stats = await dispatcher.dispatch_once()
    assert stats.parked == 1 and stats.claimed == 0 and fake.requests == requests  # not tried against Discord
    # Kept, and visible to the user.
    async with db.user_scope(closed) as s:
        conn = await raw_connection(s)
        assert await conn.fetchval("SELECT count(*) FROM notifications WHERE status = 'pending'") == 2

    fake.closed.clear()  # they opened their DMs and talk to us again
    async with db.system_scope("notifications.dm_open") as s:
        missed = await mark_dm_open(s, closed, clock())
    assert [m.id for m in missed] == [first, second] and missed[0].title == "Alert c1"
    assert (await outbox.users(closed))["dm_status"] == "unknown"

    stats = await dispatcher.dispatch_once()
    assert stats.messages_sent == 1 and stats.notifications_sent == 2
    [msg] = fake.delivered_to(closed)
    assert msg.notification_ids == (first, second)
    assert (await outbox.users(closed))["dm_status"] == "open"
    async with db.system_scope("notifications.dm_open") as s:
        assert await mark_dm_open(s, closed, clock()) == []


async def test_a_deleted_user_fails_their_rows_instead_of_sending(db: Database, outbox: Outbox) -> None:
    user = await outbox.user(1, deleted_at=datetime.now(UTC))
    await outbox.add(user, "k")
    fake = RateLimitedNotifier()
    await Dispatcher(db, fake, TokenBucket()).dispatch_once()
    [row] = await outbox.rows()
    assert row["status"] == "failed" and fake.requests == 0


async def test_run_until_stopped_and_woken_by_new_work(db: Database, outbox: Outbox) -> None:
    user = await outbox.user(1)
    await outbox.add(user, "k1")
    fake = RateLimitedNotifier()
    stop = asyncio.Event()
    dispatcher = Dispatcher(db, fake, TokenBucket())
    task = asyncio.create_task(dispatcher.run(stop, idle_s=3600))  # idle for an hour unless woken

    async def delivered(n: int) -> None:
        for _ in range(250):
            if len(fake.deliveries) >= n:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"{len(fake.deliveries)} deliveries, expected {n}")

    await delivered(1)
    await asyncio.sleep(0.1)  # now idle
    await outbox.add(user, "k2")
    dispatcher.wake()  # as the alert engine does after committing a trigger
    await delivered(2)
    stop.set()
    total = await asyncio.wait_for(task, 5)  # stop ends the idle wait at once
    assert total.messages_sent == 2 and len(fake.deliveries) == 2


async def test_console_notifier_prints_one_line_per_notification(db: Database) -> None:
    stream = io.StringIO()
    notifier = ConsoleNotifier(stream)
    msg = OutgoingMessage(7, uuid4(), "AAPL above 200", "AAPL is 201.50\n(simulated)", console_handle="alice")
    await notifier.send(msg)
    assert stream.getvalue() == "[notification #7 to @alice] AAPL above 200: AAPL is 201.50 | (simulated)\n"


def test_quiet_hours_spanning_midnight() -> None:
    def ny(h: int, m: int = 0, day: int = 25) -> datetime:
        return datetime(2026, 11, day, h, m, tzinfo=ZoneInfo("America/New_York"))

    start, end = time(22, 0), time(7, 0)
    assert quiet_hours_end(ny(23), start, end, "America/New_York") == ny(7, day=26)
    assert quiet_hours_end(ny(3), start, end, "America/New_York") == ny(7)
    assert quiet_hours_end(ny(12), start, end, "America/New_York") is None
    assert quiet_hours_end(ny(7), start, end, "America/New_York") is None  # the end is not quiet
    assert quiet_hours_end(ny(22), start, end, "America/New_York") == ny(7, day=26)
    # Same day window, and start == end means none.
    assert quiet_hours_end(ny(13), time(12), time(14), "America/New_York") == ny(14)
    assert quiet_hours_end(ny(13), time(12), time(12), "America/New_York") is None
    # A mute that ends inside quiet hours is held to the end of the quiet hours; quiet hours don't hold past a mute.
    at = hold_until(
        ny(20), kind="alert", muted_until=ny(23), quiet_start=start, quiet_end=end, timezone="America/New_York"
    )
    assert at == ny(7, day=26)
    # An unknown timezone counts as UTC.
    utc_late = datetime(2026, 11, 25, 23, 0, tzinfo=UTC)
    assert hold_until(
        utc_late, kind="fill", muted_until=None, quiet_start=start, quiet_end=end, timezone="Bad/Zone"
    ) == datetime(2026, 11, 26, 7, 0, tzinfo=UTC)
    # DST: New York falls back at 02:00 on 2026-11-01; quiet hours from 23:00 EDT end at 07:00 EST, 12:00 UTC.
    october = datetime(2026, 10, 31, 23, 0, tzinfo=ZoneInfo("America/New_York"))
    assert quiet_hours_end(october, start, end, "America/New_York") == datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


class Scripted:
    """A notifier answering from a script per user: an exception, a permanent failure, or a transient one."""

    def __init__(self, answers: dict[UUID, Delivery | Exception]) -> None:
        self.answers = answers

    async def send(self, message: OutgoingMessage) -> Delivery:
        answer = self.answers[message.user_id]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_permanent_failures_are_recorded_and_errors_never_stop_the_dispatcher(
    db: Database, outbox: Outbox, clock: Clock
) -> None:
    broken, rejected, flaky = await outbox.user(1), await outbox.user(2), await outbox.user(3)
    for user in (broken, rejected, flaky):
        await outbox.add(user, "k")
    notifier = Scripted(
        {broken: RuntimeError("notifier bug"), rejected: Failed("400 Bad Request"), flaky: RetryLater("502")}
    )
    dispatcher = Dispatcher(db, notifier, TokenBucket(), clock=clock, max_attempts=2)

    stats = await dispatcher.dispatch_once()
    assert stats.failed == 1 and stats.retried == 2
    by_user = {r["user_id"]: r for r in await outbox.rows()}
    assert by_user[rejected]["status"] == "failed" and by_user[rejected]["last_error"] == "400 Bad Request"
    assert by_user[broken]["status"] == "pending" and "RuntimeError: notifier bug" in by_user[broken]["last_error"]

    clock.advance(minutes=1)
    stats = await dispatcher.dispatch_once()
    assert stats.failed == 2  # max_attempts reached: given up, with the reason
    rows = await outbox.rows()
    assert {r["status"] for r in rows} == {"failed"}
    assert any(r["last_error"].startswith("gave up after 2 attempts: 502") for r in rows)
