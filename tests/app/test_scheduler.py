"""The worker's jobs: DAY orders expire at their close (and leave the matcher's index); equity is snapshotted."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from app.scheduler import WorkerJobs, start_scheduler
from core.db.database import Database, raw_connection
from core.orders.broker import OrderRequest, OrderType, Side, TimeInForce
from core.orders.matching import Matcher
from core.orders.paper import PaperBroker
from tests.core.orders.conftest import Clock


async def test_expiry_job_expires_day_orders_and_drops_them_from_the_index(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], clock: Clock
) -> None:
    user, pf = trader
    async with db.user_scope(user) as s:
        day = await broker.submit(
            s,
            OrderRequest(
                pf, "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), TimeInForce.DAY, limit_price=Decimal("150.00")
            ),
        )
        gtc = await broker.submit(
            s,
            OrderRequest(
                pf, "AAPL", Side.BUY, OrderType.LIMIT, Decimal(1), TimeInForce.GTC, limit_price=Decimal("150.00")
            ),
        )
    matcher = Matcher(db, broker.hours, broker.costs)
    await matcher.reload()
    jobs = WorkerJobs(db, broker.hours, matcher)
    await jobs.expire_orders()
    assert day.id in matcher.book  # 10:00 in New York: still open
    clock.at = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)  # the 16:00 close
    await jobs.expire_orders()
    assert day.id not in matcher.book and gtc.id in matcher.book
    async with db.user_scope(user) as s:
        assert (await broker.get(s, day.id)).status == "expired"  # type: ignore[union-attr]


async def test_snapshot_job_records_every_portfolio_once_per_time(
    db: Database, broker: PaperBroker, trader: tuple[UUID, UUID], market: Any
) -> None:
    jobs = WorkerJobs(db, broker.hours, None)
    await jobs.snapshot_equity()
    await jobs.snapshot_equity()  # same clock time: no duplicate
    user, _ = trader
    async with db.user_scope(user) as s:
        rows = await (await raw_connection(s)).fetch("SELECT equity, cash, positions_value FROM equity_snapshots")
    assert [tuple(r) for r in rows] == [(Decimal(10000), Decimal(10000), Decimal(0))]


async def test_the_scheduler_runs_each_job_once_at_a_time_and_coalesces(db: Database, broker: PaperBroker) -> None:
    scheduler = start_scheduler(WorkerJobs(db, broker.hours, None))
    try:
        jobs = {job.id: job for job in scheduler.get_jobs()}
        assert set(jobs) == {
            "orders.expiry",
            "alerts.expiry",
            "orders.proposal_expiry",
            "notifications.digest",
            "portfolio.snapshots",
            "auth.purge",
        }
        assert all(job.coalesce and job.max_instances == 1 for job in jobs.values())
    finally:
        scheduler.shutdown(wait=False)
