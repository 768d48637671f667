"""The alert engine on the real database: the crossing rule, recurring alerts, following changes, crash safety."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from core.alerts.engine import AlertEngine, AlertsUnavailable
from core.alerts.models import Alert
from core.alerts.service import create_alert, delete_alert, expire_alerts, list_alerts
from core.db.database import Database, raw_connection
from core.db.listen import ChangeListener
from core.live import LIVE, parse_live
from core.market.bus import TickBus
from core.market.ticks import Tick
from tests.conftest import PgCluster
from tests.core.orders.conftest import Clock
from tests.core.orders.test_matching import eventually
from tests.core.test_live import heard

D = Decimal


def tick(symbol: str, price: str, clock: Clock) -> Tick:
    return Tick(symbol, D(price), D(1), clock(), "sim")


async def new_alert(db: Database, user: UUID, clock: Clock, symbol: str, kind: str, value: str, **kw: Any) -> Alert:
    async with db.user_scope(user) as s:
        return await create_alert(s, symbol, kind, D(value), now=clock(), **kw)


async def notifications(db: Database, alert_id: UUID | None = None) -> list[dict[str, Any]]:
    async with db.system_scope("test.notifications") as s:
        rows = await (await raw_connection(s)).fetch(
            "SELECT * FROM notifications WHERE $1::uuid IS NULL OR alert_id = $1 ORDER BY id", alert_id
        )
    return [dict(r) for r in rows]


async def alert_row(db: Database, alert_id: UUID) -> dict[str, Any]:
    async with db.system_scope("test.alert_row") as s:
        row = await (await raw_connection(s)).fetchrow("SELECT * FROM alerts WHERE id = $1", alert_id)
    assert row is not None
    return dict(row)


async def feed(engine: AlertEngine, clock: Clock, symbol: str, *prices: str) -> None:
    """Each tick, then its fires committed (as the engine's committing task would)."""
    for price in prices:
        clock.advance(seconds=1)
        await engine.on_tick(tick(symbol, price, clock))
        await engine.flush()


async def test_each_kind_fires_exactly_once_at_its_crossing(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    above = await new_alert(db, alice, clock, "AAPL", "above", "210")
    below = await new_alert(db, alice, clock, "AAPL", "below", "190", note="buy the dip")
    pct = await new_alert(db, alice, clock, "MSFT", "percent", "-5")  # 400 - 5% = 380
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "205", "209.99")
    await feed(engine, clock, "MSFT", "381", "390")
    assert await notifications(db) == []
    await feed(engine, clock, "AAPL", "211", "209", "212", "189", "195", "185")
    await feed(engine, clock, "MSFT", "379.5", "390", "370")
    assert [n["alert_id"] for n in await notifications(db)] == [above.id, below.id, pct.id]
    first = (await notifications(db, above.id))[0]
    assert first["dedupe_key"] == f"alert:{above.id}:1" and first["kind"] == "alert" and first["status"] == "pending"
    assert first["title"] == "AAPL above 210" and "traded at 211" in first["body"]
    assert "buy the dip" in (await notifications(db, below.id))[0]["body"]
    assert "-5% from 400" in (await notifications(db, pct.id))[0]["body"]
    row = await alert_row(db, above.id)
    assert (row["status"], row["trigger_count"], row["last_trigger_price"]) == ("triggered", 1, D(211))
    assert engine.fired == 3 and len(engine.index) == 0


async def test_a_tick_exactly_at_the_threshold_fires_and_one_that_starts_there_does_not(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    above = await new_alert(db, alice, clock, "AAPL", "above", "210")
    below = await new_alert(db, alice, clock, "MSFT", "below", "390")
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "210")  # prev 200 < 210 <= 210
    await feed(engine, clock, "MSFT", "390")  # 390 <= 390 < prev 400
    assert {n["alert_id"] for n in await notifications(db)} == {above.id, below.id}
    # A recurring above alert with the price sitting at its level: leaving it and coming back is a crossing,
    # staying at it is not (prev < T is false).
    again = await new_alert(db, alice, clock, "BTC-USD", "above", "90001", recurring=True, cooldown=60)
    await engine.reload(clock())
    await feed(engine, clock, "BTC-USD", "90001", "90001", "90001.5")
    assert len(await notifications(db, again.id)) == 1


async def test_a_tick_jumping_past_many_thresholds_fires_all_of_them_once(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    ups = [await new_alert(db, alice, clock, "AAPL", "above", str(201 + i)) for i in range(5)]
    downs = [await new_alert(db, alice, clock, "AAPL", "below", str(199 - i)) for i in range(4)]
    far = await new_alert(db, alice, clock, "AAPL", "above", "300")
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "204.5")
    assert {n["alert_id"] for n in await notifications(db)} == {a.id for a in ups[:4]}
    await feed(engine, clock, "AAPL", "150")  # one tick down through every below level
    fired = {n["alert_id"] for n in await notifications(db)}
    assert fired == {a.id for a in ups[:4] + downs}
    await feed(engine, clock, "AAPL", "205", "204", "205")  # ups[4] fires once; the fired ones are gone
    assert len(await notifications(db)) == 9 and far.id not in {n["alert_id"] for n in await notifications(db)}
    assert len(engine.index) == 1


async def test_recurring_alerts_respect_their_cooldown_and_expiry(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(
        db, alice, clock, "AAPL", "above", "210", recurring=True, cooldown=600, expires_at=clock() + timedelta(hours=1)
    )
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "211")
    await feed(engine, clock, "AAPL", "205", "212", "205", "213")  # within the cooldown: nothing
    assert len(await notifications(db, alert.id)) == 1
    row = await alert_row(db, alert.id)
    assert (row["status"], row["trigger_count"]) == ("active", 1)
    assert row["rearm_at"] == row["last_triggered_at"] + timedelta(seconds=600)
    clock.advance(minutes=10)
    await feed(engine, clock, "AAPL", "214")  # re-armed while above: no crossing yet
    await feed(engine, clock, "AAPL", "205", "210")
    keys = [n["dedupe_key"] for n in await notifications(db, alert.id)]
    assert keys == [f"alert:{alert.id}:1", f"alert:{alert.id}:2"]
    clock.advance(hours=1)  # past its expiry: crossings no longer fire
    await feed(engine, clock, "AAPL", "205", "215")
    assert len(await notifications(db, alert.id)) == 2
    async with db.system_scope("alerts.expiry") as s:
        assert await expire_alerts(s, clock()) == 1
    assert (await alert_row(db, alert.id))["status"] == "expired"


async def test_an_expired_once_alert_does_not_fire(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210", expires_at=clock() + timedelta(minutes=5))
    await engine.reload(clock())
    clock.advance(minutes=6)
    await feed(engine, clock, "AAPL", "211")
    assert await notifications(db) == [] and (await alert_row(db, alert.id))["status"] == "active"
    async with heard(db, LIVE) as queue:
        async with db.system_scope("alerts.expiry") as s:
            assert await expire_alerts(s, clock()) == 1
            assert await expire_alerts(s, clock()) == 0
        assert parse_live(await asyncio.wait_for(queue.get(), 10)) == {alice: {"alerts"}}  # the page drops it


async def test_the_engine_follows_creates_and_deletes_from_any_process(
    db: Database, alice: UUID, engine: AlertEngine, following: ChangeListener, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    await eventually(lambda: alert.id in engine)
    doomed = await new_alert(db, alice, clock, "AAPL", "above", "220")
    await eventually(lambda: doomed.id in engine)
    async with db.user_scope(alice) as s:
        await delete_alert(s, doomed.id)
    await eventually(lambda: doomed.id not in engine)
    assert len(engine.index) == 1
    await feed(engine, clock, "AAPL", "225")
    assert [n["alert_id"] for n in await notifications(db)] == [alert.id]


async def test_a_committed_trigger_is_not_repeated_by_a_restarted_engine(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    once = await new_alert(db, alice, clock, "AAPL", "above", "210")
    recurring = await new_alert(db, alice, clock, "AAPL", "above", "209", recurring=True, cooldown=60)
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "211")
    assert len(await notifications(db)) == 2
    # The worker dies after the commit, before anything was delivered; a new one loads from the database and
    # replays the same tick (e.g. from a reconnecting feed): nothing doubles.
    del engine
    restarted = AlertEngine(db, clock=clock, retry_after_s=0, autostart=False)
    await restarted.reload(clock())
    assert once.id not in restarted and recurring.id in restarted
    await restarted.on_tick(tick("AAPL", "205", clock))
    await restarted.on_tick(tick("AAPL", "211", clock))  # still cooling down: nothing
    await restarted.flush()
    rows = await notifications(db)
    assert sorted(r["dedupe_key"] for r in rows) == sorted([f"alert:{once.id}:1", f"alert:{recurring.id}:1"])
    assert all(r["status"] == "pending" for r in rows)  # waiting in the outbox for the dispatcher


async def test_a_trigger_replayed_with_the_old_count_does_nothing(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    old = AlertEngine(db, clock=clock, retry_after_s=0, autostart=False)
    await old.reload(clock())
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "211")
    await old.on_tick(tick("AAPL", "212", clock))  # a second engine holding the same alert: the count decides
    await old.flush()
    assert len(await notifications(db, alert.id)) == 1 and old.fired == 0 and alert.id not in old


async def test_a_trigger_whose_transaction_failed_is_retried_exactly_once(
    db: Database, db_url: str, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    await engine.reload(clock())
    admin = await asyncpg.connect(db_url)  # the login role, owner of the tables, as the migration runner
    try:
        # The outbox insert fails, so the whole trigger rolls back, the alert's mark included.
        await admin.execute(
            "ALTER TABLE tradedesk.notifications ADD CONSTRAINT test_broken CHECK (kind <> 'alert') NOT VALID"
        )
        await feed(engine, clock, "AAPL", "211")
        assert engine.failed == 1 and engine.pending_retries == 1 and engine.fired == 0
        assert (await alert_row(db, alert.id))["trigger_count"] == 0
        await feed(engine, clock, "AAPL", "212")  # retried first, fails again, still queued once
        assert engine.failed == 2 and engine.pending_retries == 1
        await admin.execute("ALTER TABLE tradedesk.notifications DROP CONSTRAINT test_broken")
    finally:
        await admin.close()
    await feed(engine, clock, "AAPL", "212.5")  # no crossing of its own: the retry fires it
    await feed(engine, clock, "AAPL", "213")
    await engine.retry_pending(force=True)
    rows = await notifications(db, alert.id)
    assert len(rows) == 1 and rows[0]["payload"]["price"] == 211
    assert engine.fired == 1 and engine.pending_retries == 0
    assert (await alert_row(db, alert.id))["status"] == "triggered"


async def test_a_move_during_a_feed_gap_fires_on_the_first_tick_after_it(
    db: Database, alice: UUID, clock: Clock, market: Callable[..., Any]
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    below = await new_alert(db, alice, clock, "MSFT", "below", "390")
    # The worker starts after a gap: its previous price is the last known one (200), not the first tick's.
    engine = AlertEngine(db, clock=clock, retry_after_s=0, autostart=False)
    await engine.reload(clock())
    clock.advance(minutes=30)
    await engine.on_tick(tick("AAPL", "230", clock))
    await engine.flush()
    # A gap while running: the last tick seen (400) is the previous price of the first tick after it.
    await engine.on_tick(tick("MSFT", "400", clock))
    clock.advance(minutes=30)
    await engine.on_tick(tick("MSFT", "350", clock))
    await engine.flush()
    assert {n["alert_id"] for n in await notifications(db)} == {alert.id, below.id}


async def test_the_alert_list_shows_fired_alerts_only_when_asked(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "215")
    async with db.user_scope(alice) as s:
        assert await list_alerts(s) == []
        [shown] = await list_alerts(s, include_inactive=True)
    assert shown.id == alert.id and shown.status == "triggered" and shown.trigger_count == 1


async def test_a_recurring_alert_deleted_while_cooling_down_never_fires_again(
    db: Database, alice: UUID, engine: AlertEngine, following: ChangeListener, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210", recurring=True, cooldown=60)
    await eventually(lambda: alert.id in engine)
    await feed(engine, clock, "AAPL", "211")
    assert alert.id in engine and len(engine.index) == 0  # cooling down, out of the index
    async with db.user_scope(alice) as s:
        await delete_alert(s, alert.id)
    await eventually(lambda: alert.id not in engine)
    clock.advance(minutes=5)
    await feed(engine, clock, "AAPL", "205", "215")
    assert engine.fired == 1 and len(engine.index) == 0
    # The outbox row outlives the alert (alert_id set to NULL), so the trigger is still delivered.
    rows = await notifications(db)
    assert len(rows) == 1 and rows[0]["alert_id"] is None and rows[0]["dedupe_key"] == f"alert:{alert.id}:1"


async def kill_pooled_connections(pg: PgCluster, db_name: str) -> None:
    """What a Postgres restart or failover does to the pool: every idle pooled connection is dead."""
    admin = await pg.admin()
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            db_name,
        )
    finally:
        await admin.close()
    await asyncio.sleep(0.1)


async def test_a_dead_pooled_connection_means_retry_later_and_the_trigger_is_not_lost(
    db: Database, pg: PgCluster, db_name: str, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    other = await new_alert(db, alice, clock, "MSFT", "above", "410")
    await engine.reload(clock())
    await kill_pooled_connections(pg, db_name)
    # The error comes through SQLAlchemy, not asyncpg: the listener must see it as "reconnect and reload".
    with pytest.raises(AlertsUnavailable) as raised:
        await engine.on_change(f"alerts:{other.id}")
    assert isinstance(raised.value, ConnectionError)
    await engine.reload(clock())  # the listener's reconnect: a fresh pooled connection, now idle in the pool
    await kill_pooled_connections(pg, db_name)
    await feed(engine, clock, "AAPL", "211")  # the fire's transaction fails on a dead connection: queued
    assert engine.failed == 1 and engine.fired == 0 and engine.pending_retries == 1 and alert.id in engine
    await feed(engine, clock, "AAPL", "209")  # retried first (a fresh connection): committed, once
    await engine.flush(force=True)
    rows = await notifications(db, alert.id)
    assert len(rows) == 1 and rows[0]["payload"]["price"] == 211 and engine.pending_fires == 0
    assert engine.fired == 1 and alert.id not in engine
    await feed(engine, clock, "MSFT", "411")  # the other alert was not lost either
    assert [n["alert_id"] for n in await notifications(db)] == [alert.id, other.id]


async def test_a_fast_cross_and_back_fires_although_its_commit_waits(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "MSFT", "above", "410")
    await engine.reload(clock())
    for price in ("400", "411", "400"):  # faster than any commit: ticks are never held up by the database
        clock.advance(seconds=1)
        await engine.on_tick(tick("MSFT", price, clock))
    assert engine.pending_fires == 1 and await notifications(db) == []
    assert await engine.drain() == 0  # a graceful stop commits what is queued
    rows = await notifications(db, alert.id)
    assert len(rows) == 1 and rows[0]["payload"]["price"] == 411 and engine.fired == 1


async def test_the_engine_keeps_up_with_the_bus_while_a_commit_is_stuck(
    db: Database, pg: PgCluster, db_name: str, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    stuck = await new_alert(db, alice, clock, "AAPL", "above", "210")
    quick = await new_alert(db, alice, clock, "MSFT", "above", "410")
    await engine.reload(clock())
    bus = TickBus()
    ticks = bus.subscribe("alerts", maxsize=1)  # the smallest queue: any lag would conflate

    async def consume() -> None:
        async for t in ticks:
            await engine.on_tick(t)

    consumer = asyncio.create_task(consume())
    committer = asyncio.create_task(engine.run_fires())
    locker = await asyncpg.connect(pg.superuser_url, database=db_name)
    try:
        tx = locker.transaction()
        await tx.start()
        await locker.execute("SELECT 1 FROM tradedesk.alerts WHERE id = $1 FOR UPDATE", stuck.id)
        bus.publish(tick("AAPL", "211", clock))  # its fire_alert now waits for the row lock
        for price in ("400", "411", "400"):
            await asyncio.sleep(0.05)
            clock.advance(seconds=1)
            bus.publish(tick("MSFT", price, clock))
        await asyncio.sleep(0.05)
        assert ticks.dropped == 0 and ticks.pending() == 0 and engine.pending_fires == 2
        await tx.rollback()
        await eventually(lambda: engine.fired == 2)
    finally:
        await locker.close()
        ticks.close()
        await consumer
        committer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await committer
    assert {n["alert_id"] for n in await notifications(db)} == {stuck.id, quick.id}
    assert len(await notifications(db)) == 2


async def test_an_alert_crossed_before_the_engine_hears_of_it_fires(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    await feed(engine, clock, "AAPL", "200")
    alert = await new_alert(db, alice, clock, "AAPL", "above", "205")  # checked against 200
    calm = await new_alert(db, alice, clock, "MSFT", "below", "390")
    await feed(engine, clock, "AAPL", "206")  # the crossing tick beats the NOTIFY to the engine
    await feed(engine, clock, "MSFT", "395")
    await engine.on_change(f"alerts:{alert.id}")
    await engine.on_change(f"alerts:{calm.id}")  # moved, but not across its level: indexed as usual
    await engine.flush()
    rows = await notifications(db, alert.id)
    assert len(rows) == 1 and rows[0]["payload"]["price"] == 206
    assert calm.id in engine and len(engine.index) == 1
    await engine.on_change(f"alerts:{alert.id}")  # a late duplicate change: nothing more
    await feed(engine, clock, "AAPL", "204", "207")
    assert len(await notifications(db)) == 1
    # The same for an engine (re)loading after the move: the created-at price is the previous one.
    late = await new_alert(db, alice, clock, "AAPL", "below", "200", last_price=D("201"))
    restarted = AlertEngine(db, clock=clock, retry_after_s=0, autostart=False)
    await restarted.on_tick(tick("AAPL", "199", clock))
    await restarted.reload(clock())
    await restarted.flush()
    assert [n["alert_id"] for n in await notifications(db, late.id)] == [late.id]


async def test_the_message_keeps_the_zeros_of_an_integer_price(
    db: Database, alice: UUID, engine: AlertEngine, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    pct = await new_alert(db, alice, clock, "MSFT", "percent", "-10")  # 400 - 10% = 360
    await engine.reload(clock())
    await feed(engine, clock, "AAPL", "210")
    await feed(engine, clock, "MSFT", "300.50")
    [n] = await notifications(db, alert.id)
    assert n["title"] == "AAPL above 210"
    assert n["body"] == "AAPL traded at 210, at or above 210."
    [m] = await notifications(db, pct.id)
    assert m["body"] == "MSFT traded at 300.5, at or below 360 (-10% from 400)."


async def test_without_a_committing_task_of_its_own_the_engine_starts_one(
    db: Database, alice: UUID, clock: Clock
) -> None:
    alert = await new_alert(db, alice, clock, "AAPL", "above", "210")
    engine = AlertEngine(db, clock=clock, retry_after_s=0)  # autostart, as the worker builds it
    await engine.reload(clock())
    await engine.on_tick(tick("AAPL", "211", clock))
    await eventually(lambda: engine.fired == 1)
    assert await engine.drain() == 0  # and the stop ends the task it started
    assert [n["alert_id"] for n in await notifications(db)] == [alert.id]


async def test_a_batch_of_fires_tells_live_pages_once_with_the_distinct_users(
    db: Database, alice: UUID, bob: UUID, engine: AlertEngine, clock: Clock
) -> None:
    for user in (alice, alice, bob):
        await new_alert(db, user, clock, "AAPL", "above", "210")
    await engine.reload(clock())
    async with heard(db, LIVE) as queue:
        clock.advance(seconds=1)
        await engine.on_tick(tick("AAPL", "211", clock))
        await engine.flush()  # three fires, three transactions, one NOTIFY after them
        payload = await asyncio.wait_for(queue.get(), 10)
        await asyncio.sleep(0.05)
        assert queue.empty()
    assert parse_live(payload) == {alice: {"alerts", "inbox"}, bob: {"alerts", "inbox"}}
    assert engine.fired == 3
