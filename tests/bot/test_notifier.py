"""The Discord Notifier with the real outbox dispatcher, the real database and discord.py's real HTTP client, against
bench.fake_discord (a global limit of 50 requests/s answered with Discord's own 429 bodies, per-channel message
buckets, nonce dedupe with enforce_nonce, closed DMs as 403 50007, unknown channels as 404 10003).

Nothing of ours is mocked: `DiscordNotifier(HTTPClient)` talks HTTP to the fake exactly as it would to Discord, and
every assertion is on what the fake saw and what the outbox recorded. Rates are checked through the fake's counters
(`http_429`), never against the wall clock.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from discord.http import HTTPClient

from bench.fake_discord import FakeDiscord, RecordedRequest
from bot.notifier import DiscordNotifier
from core.db.database import Database
from core.db.types import utcnow
from core.notifications.dispatcher import Dispatcher, mark_dm_open
from core.notifications.limiter import TokenBucket
from core.notifications.notifier import Sent
from tests.core.notifications.conftest import Outbox, drain
from tests.helpers import Clock

OPEN_DM = "POST /users/@me/channels"
POST_MESSAGE = "POST /channels/{channel_id}/messages"
LEASE = timedelta(seconds=60)
BATCH = 100  # the dispatcher's default batch size, spelled out where a count depends on it


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(rate_limit_per_s=50) as server:
        server.point_client_here()
        yield server


@pytest.fixture
async def http(fake: FakeDiscord) -> AsyncIterator[HTTPClient]:
    """discord.py's HTTP client logged in to the fake, as the bot's is (GET /users/@me)."""
    client = HTTPClient(asyncio.get_running_loop())
    await client.static_login(fake.token)
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
def clock() -> Clock:
    """A minute ahead of the real time, so rows enqueued with the database's now() are due at once."""
    return Clock(utcnow() + timedelta(minutes=1))


@pytest.fixture
def outbox(db: Database) -> Outbox:
    return Outbox(db)


def dispatcher(db: Database, http: HTTPClient, clock: Clock, **kwargs: Any) -> Dispatcher:
    """The dispatcher as the worker builds it (default TokenBucket, batch size, coalescing), on the test's clock."""
    return Dispatcher(db, DiscordNotifier(http), TokenBucket(), clock=clock, lease=LEASE, **kwargs)


def discord_id(n: int) -> int:
    return 1000 + n  # Outbox.user(n) gives user n this Discord id


def dm_channel_on_discord(fake: FakeDiscord, n: int) -> int:
    """The DM channel Discord already has with user n, as after they once DMed the bot (no request is made)."""
    who = fake.payloads.user(f"trader{n}", user_id=discord_id(n))
    return int(fake.payloads.message_create("hi", guild=False, who=who)["channel_id"])


def since(fake: FakeDiscord, mark: int) -> list[RecordedRequest]:
    return fake.requests[mark:]


def nonce_counts(fake: FakeDiscord) -> Counter[str]:
    """How many visible messages carry each nonce (fake.messages holds what users can see; dedupes add nothing)."""
    return Counter(str(m["nonce"]) for m in fake.messages.values())


async def test_one_notification_is_one_dm_and_the_channel_is_cached_for_the_next(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    user = await outbox.user(1, channel=False)
    nid = await outbox.add(user, "k1", title="AAPL above 200")
    d = dispatcher(db, http, clock)
    mark = len(fake.requests)

    stats = await d.dispatch_once()

    assert stats.messages_sent == 1 and stats.claimed == 1
    assert [r.route for r in since(fake, mark)] == [OPEN_DM, POST_MESSAGE]
    channel = fake.dm_channel_id(discord_id(1))
    assert channel is not None
    [message] = fake.channel_messages(channel)
    assert len(fake.messages) == 1
    post = since(fake, mark)[1]
    assert post.path == f"/channels/{channel}/messages" and post.status == 200
    assert post.json["nonce"] == str(nid) and post.json["enforce_nonce"] is True
    [embed] = post.json["embeds"]
    assert embed["title"] == "AAPL above 200" and embed["description"] == "body of k1"
    assert message["nonce"] == str(nid) and message["embeds"][0]["title"] == "AAPL above 200"
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["discord_message_id"] == int(message["id"]) and row["attempts"] == 1
    me = await outbox.users(user)
    assert me["dm_channel_id"] == channel and me["dm_status"] == "open"

    # The channel is cached: the next notification is one request, in the same channel.
    second = await outbox.add(user, "k2", title="AAPL above 210")
    mark = len(fake.requests)
    assert (await d.dispatch_once()).messages_sent == 1
    [post] = since(fake, mark)
    assert post.route == POST_MESSAGE and post.path == f"/channels/{channel}/messages" and post.status == 200
    assert post.json["nonce"] == str(second)
    assert [m["embeds"][0]["title"] for m in fake.channel_messages(channel)] == ["AAPL above 200", "AAPL above 210"]
    assert fake.http_429 == 0 and fake.nonce_dedupes == 0


def assert_each_once_in_its_users_channel(fake: FakeDiscord, expected: dict[int, tuple[int, str]]) -> None:
    """`expected`: nonce -> (the user's Discord id, the title). Every one is visible exactly once, in that user's DM
    channel, and nothing else is visible."""
    assert nonce_counts(fake) == Counter({str(nonce): 1 for nonce in expected})
    for message in fake.messages.values():
        who, title = expected[int(message["nonce"])]
        assert int(message["channel_id"]) == fake.dm_channel_id(who)
        assert message["embeds"][0]["title"] == title


@pytest.mark.parametrize(("users", "each"), [(50, 6), (100, 3)], ids=["50x6", "100x3"])
async def test_a_burst_for_many_users_is_paced_under_discords_limit_and_delivered_once(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock, users: int, each: int
) -> None:
    # tests/core/notifications/test_dispatcher.py's burst (300 notifications, half the users without a cached DM
    # channel, one message per notification), through discord.py into the fake's 50 requests/s.
    ids = [
        await outbox.user(n, dm_channel_id=dm_channel_on_discord(fake, n) if n % 2 == 0 else None) for n in range(users)
    ]
    expected: dict[int, tuple[int, str]] = {}
    for i in range(each):
        for n, user in enumerate(ids):
            nid = await outbox.add(user, f"a{n}-{i}")
            expected[nid] = (discord_id(n), f"Alert a{n}-{i}")
    d = dispatcher(db, http, clock, coalesce=False, batch_size=BATCH)
    mark = len(fake.requests)

    stats = await drain(d)

    assert fake.http_429 == 0
    assert stats.messages_sent == stats.notifications_sent == users * each and stats.retried == 0
    assert_each_once_in_its_users_channel(fake, expected)
    assert fake.nonce_dedupes == 0
    # One request per message, plus opening a DM channel for each message to a user without a cached one: only in
    # the first batch (BATCH rows: each user's first BATCH // users notifications), whose outcome caches the channel.
    routes = Counter(r.route for r in since(fake, mark))
    assert routes == Counter({POST_MESSAGE: users * each, OPEN_DM: users // 2 * (BATCH // users)})
    assert {r.status for r in since(fake, mark)} == {200}
    rows = await outbox.rows()
    assert {r["status"] for r in rows} == {"sent"} and all(r["attempts"] == 1 for r in rows)
    by_nonce = {int(m["nonce"]): int(m["id"]) for m in fake.messages.values()}
    assert {r["id"]: r["discord_message_id"] for r in rows} == by_nonce
    for n, user in enumerate(ids):
        me = await outbox.users(user)
        assert me["dm_channel_id"] == fake.dm_channel_id(discord_id(n)) and me["dm_status"] == "open"


async def test_a_crash_after_discords_acknowledgement_shows_each_notification_once(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    # 100 users, two notifications each, coalesced into one message per user (the worker's default); half the users
    # without a cached DM channel. The first batch (the first 50 users) reaches Discord, which answers 200, and the
    # process dies before the outbox records it.
    users = [
        await outbox.user(n, dm_channel_id=dm_channel_on_discord(fake, n) if n % 2 == 0 else None) for n in range(100)
    ]
    titles: dict[int, str] = {}
    for n, user in enumerate(users):
        for i in range(2):
            titles[await outbox.add(user, f"a{n}-{i}")] = f"Alert a{n}-{i}"
    crashed = dispatcher(db, http, clock)
    batch = await crashed.claim()
    assert [len(rows) for _, rows in batch.messages] == [2] * 50
    first = await crashed.deliver(batch)
    assert len(fake.messages) == 50 and all(isinstance(d, Sent) for d in first)
    del crashed, batch  # gone without recording: the 100 rows stay leased

    [unrecorded] = await outbox.rows("id = $1", min(titles))
    assert unrecorded["status"] == "pending" and unrecorded["next_attempt_at"] == clock() + LEASE
    clock.advance(seconds=61)  # the lease ends
    survivor = dispatcher(db, http, clock)
    stats = await drain(survivor)

    assert fake.http_429 == 0
    # The 50 groups went out again with the same nonce and Discord answered with the first messages.
    assert fake.nonce_dedupes == 50
    assert stats.messages_sent == 100 and stats.notifications_sent == 200
    rows = {r["id"]: r for r in await outbox.rows()}
    leaders = {i for i, r in rows.items() if r["status"] == "sent"}
    assert len(leaders) == 100
    assert all(
        r["status"] == "coalesced" and r["coalesced_into"] in leaders for i, r in rows.items() if i not in leaders
    )
    assert nonce_counts(fake) == Counter({str(i): 1 for i in leaders})  # one visible DM per group, no second
    seen: Counter[int] = Counter()
    for message in fake.messages.values():
        leader = rows[int(message["nonce"])]
        assert leader["discord_message_id"] == int(message["id"])
        n = users.index(leader["user_id"])
        assert int(message["channel_id"]) == fake.dm_channel_id(discord_id(n))
        embed = message["embeds"][0]
        assert embed["title"] == "2 notifications"
        for i, title in titles.items():
            if title + ":" in embed["description"]:
                seen[i] += 1
    assert seen == Counter(dict.fromkeys(titles, 1))  # every notification visible exactly once
    # 50 first sends + 50 repeats + 50 for the rest; a DM channel opened for every send to an uncached user (the
    # crash lost the 25 channels opened first: they are opened again, and Discord returns the same channel).
    assert len(fake.requests_to(POST_MESSAGE, status=200)) == 150
    assert len(fake.requests_to(OPEN_DM)) == 75


async def test_closed_dms_park_the_notification_until_the_user_is_back(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    closed = await outbox.user(1, channel=False)
    other = await outbox.user(2, dm_channel_id=dm_channel_on_discord(fake, 2))
    fake.closed_dms.add(discord_id(1))
    first = await outbox.add(closed, "c1", title="AAPL above 200")
    await outbox.add(other, "o1")
    d = dispatcher(db, http, clock)

    stats = await d.dispatch_once()  # the other user's DM still goes out

    assert stats.dms_closed == 1 and stats.parked == 1 and stats.messages_sent == 1
    [refused] = fake.requests_to(POST_MESSAGE, status=403)
    assert refused.response == {"message": "Cannot send messages to this user", "code": 50007}
    assert refused.json["nonce"] == str(first)
    me = await outbox.users(closed)
    assert me["dm_status"] == "closed"
    [row] = await outbox.rows("id = $1", first)
    assert row["status"] == "pending" and row["parked"] and "50007" in row["last_error"]

    # Parked: later rounds don't try Discord for them, however long we wait.
    mark = len(fake.requests)
    clock.advance(hours=1)
    assert (await d.dispatch_once()).claimed == 0
    assert since(fake, mark) == []

    fake.closed_dms.discard(discord_id(1))  # they opened their DMs and talk to us again
    async with db.system_scope("notifications.dm_open") as s:
        missed = await mark_dm_open(s, closed, clock())
    assert [m.id for m in missed] == [first]
    stats = await d.dispatch_once()
    assert stats.messages_sent == 1

    channel = fake.dm_channel_id(discord_id(1))
    assert channel is not None
    [message] = fake.channel_messages(channel)
    assert message["nonce"] == str(first) and message["embeds"][0]["title"] == "AAPL above 200"
    me = await outbox.users(closed)
    assert me["dm_status"] == "open" and me["dm_channel_id"] == channel
    [row] = await outbox.rows("id = $1", first)
    assert row["status"] == "sent" and row["discord_message_id"] == int(message["id"])
    assert nonce_counts(fake)[str(first)] == 1 and fake.http_429 == 0


async def test_a_500_is_retried_by_discord_py_and_delivered_once(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    channel = dm_channel_on_discord(fake, 1)
    user = await outbox.user(1, dm_channel_id=channel)
    nid = await outbox.add(user, "k")
    fake.fail_next(500, path_contains="/messages")

    stats = await dispatcher(db, http, clock).dispatch_once()

    assert stats.messages_sent == 1 and stats.retried == 0  # discord.py retried the 500 itself (after ~1 s)
    assert [r.status for r in fake.requests_to(POST_MESSAGE)] == [500, 200]
    [message] = fake.channel_messages(channel)
    assert message["nonce"] == str(nid) and len(fake.messages) == 1
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["attempts"] == 1


async def test_a_503_is_retried_later_by_the_dispatcher_and_delivered_once(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    channel = dm_channel_on_discord(fake, 1)
    user = await outbox.user(1, dm_channel_id=channel)
    nid = await outbox.add(user, "k")
    fake.fail_next(503, path_contains="/messages")  # discord.py doesn't retry a 503: DiscordServerError
    d = dispatcher(db, http, clock)

    stats = await d.dispatch_once()

    assert stats.retried == 1 and stats.messages_sent == 0
    [row] = await outbox.rows()
    assert row["status"] == "pending" and row["attempts"] == 1 and "503" in row["last_error"]
    assert fake.messages == {}
    assert (await d.dispatch_once()).claimed == 0  # backing off

    clock.advance(seconds=5)
    assert (await d.dispatch_once()).messages_sent == 1
    assert [r.status for r in fake.requests_to(POST_MESSAGE)] == [503, 200]
    [message] = fake.channel_messages(channel)
    assert message["nonce"] == str(nid) and len(fake.messages) == 1
    [row] = await outbox.rows()
    assert row["status"] == "sent" and row["attempts"] == 2 and row["discord_message_id"] == int(message["id"])


async def test_a_stale_cached_dm_channel_is_reopened_once(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    stale = 424242424242424242  # a channel Discord doesn't know (any more)
    user = await outbox.user(1, dm_channel_id=stale)
    nid = await outbox.add(user, "k1")
    d = dispatcher(db, http, clock)
    mark = len(fake.requests)

    assert (await d.dispatch_once()).messages_sent == 1

    requests = since(fake, mark)
    assert [(r.route, r.status) for r in requests] == [(POST_MESSAGE, 404), (OPEN_DM, 200), (POST_MESSAGE, 200)]
    assert requests[0].path == f"/channels/{stale}/messages"
    assert requests[0].response == {"message": "Unknown Channel", "code": 10003}
    channel = fake.dm_channel_id(discord_id(1))
    assert channel is not None and channel != stale
    assert requests[2].path == f"/channels/{channel}/messages" and requests[2].json["nonce"] == str(nid)
    [message] = fake.channel_messages(channel)
    assert message["nonce"] == str(nid) and len(fake.messages) == 1
    assert (await outbox.users(user))["dm_channel_id"] == channel  # the fresh channel replaces the stale one

    # And the next notification is one request again.
    await outbox.add(user, "k2")
    mark = len(fake.requests)
    assert (await d.dispatch_once()).messages_sent == 1
    assert [(r.path, r.status) for r in since(fake, mark)] == [(f"/channels/{channel}/messages", 200)]


async def test_a_refused_token_keeps_notifications_for_later_instead_of_failing_them(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    channel = dm_channel_on_discord(fake, 1)
    user = await outbox.user(1, dm_channel_id=channel)
    await outbox.add(user, "k")
    fake.fail_next(401, path_contains="/messages")  # a token revoked while the bot runs
    d = dispatcher(db, http, clock)

    stats = await d.dispatch_once()

    assert stats.retried == 1 and stats.failed == 0
    [row] = await outbox.rows()
    assert row["status"] == "pending" and "401" in row["last_error"]
    clock.advance(seconds=301)  # the notifier asked for five minutes
    assert (await d.dispatch_once()).messages_sent == 1


async def test_a_hanging_send_ends_well_inside_the_lease_and_is_retried(
    db: Database, outbox: Outbox, fake: FakeDiscord, http: HTTPClient, clock: Clock
) -> None:
    channel = dm_channel_on_discord(fake, 1)
    user = await outbox.user(1, dm_channel_id=channel)
    await outbox.add(user, "k")
    fake.latency_s = 1.0
    d = Dispatcher(db, DiscordNotifier(http, timeout_s=0.2), TokenBucket(), clock=clock, lease=LEASE)

    stats = await d.dispatch_once()

    assert stats.retried == 1
    [row] = await outbox.rows()
    assert row["status"] == "pending" and "no answer from Discord within 0.2 s" in row["last_error"]
    fake.latency_s = 0.0
    clock.advance(seconds=10)
    assert (await d.dispatch_once()).messages_sent == 1
    # The slow first request may still have reached Discord: the nonce keeps it to one visible message.
    assert len(fake.channel_messages(channel)) == 1
