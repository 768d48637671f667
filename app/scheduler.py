"""The worker's scheduler: periodic jobs, each run once at a time and coalesced when late.

APScheduler 3 (4.x is still alpha). Jobs are thin: open a system_scope, call one core function, log one line.
"""

from __future__ import annotations

import logging
from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from core.alerts.service import expire_alerts
from core.db.database import Database
from core.market.sessions import MarketHours
from core.notifications.digest import enqueue_digests
from core.orders.matching import Matcher
from core.orders.paper import expire_day_orders
from core.orders.proposals import expire_proposals
from core.portfolio.service import snapshot_equity

log = logging.getLogger(__name__)

EXPIRY_EVERY_S = 15
SNAPSHOT_EVERY_S = 300
ALERT_EXPIRY_EVERY_S = 60
DIGEST_EVERY_S = 60


class WorkerJobs:
    def __init__(self, db: Database, hours: MarketHours, matcher: Matcher | None) -> None:
        self.db = db
        self.hours = hours
        self.matcher = matcher

    async def expire_orders(self) -> None:
        async with self.db.system_scope("orders.expiry") as session:
            expired = await expire_day_orders(session, self.hours.now())
        if self.matcher is not None:
            for order_id in expired:
                self.matcher.book.remove(order_id)
        if expired:
            log.info("orders: %d DAY order(s) expired at their session close", len(expired))

    async def expire_alerts(self) -> None:
        async with self.db.system_scope("alerts.expiry") as session:
            count = await expire_alerts(session, self.hours.now())
        if count:
            log.info("alerts: %d alert(s) expired", count)

    async def expire_proposals(self) -> None:
        async with self.db.system_scope("orders.proposal_expiry") as session:
            count = await expire_proposals(session, self.hours.now())
        if count:
            log.info("orders: %d unconfirmed proposal(s) expired", count)

    async def daily_digests(self) -> None:
        async with self.db.system_scope("notifications.digest") as session:
            count = await enqueue_digests(session, self.hours.now())
        if count:
            log.info("notifications: %d daily digest(s) queued", count)

    async def snapshot_equity(self) -> None:
        async with self.db.system_scope("portfolio.snapshots") as session:
            count = await snapshot_equity(session, self.hours.now())
        log.debug("portfolio: equity snapshot of %d portfolio(s)", count)


def start_scheduler(jobs: WorkerJobs) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    )
    scheduler.add_job(jobs.expire_orders, "interval", seconds=EXPIRY_EVERY_S, id="orders.expiry")
    scheduler.add_job(jobs.expire_alerts, "interval", seconds=ALERT_EXPIRY_EVERY_S, id="alerts.expiry")
    scheduler.add_job(jobs.expire_proposals, "interval", seconds=ALERT_EXPIRY_EVERY_S, id="orders.proposal_expiry")
    scheduler.add_job(jobs.daily_digests, "interval", seconds=DIGEST_EVERY_S, id="notifications.digest")
    scheduler.add_job(jobs.snapshot_equity, "interval", seconds=SNAPSHOT_EVERY_S, id="portfolio.snapshots")
    scheduler.start()
    log.info(
        "scheduler: DAY-order expiry every %d s, alert and proposal expiry every %d s, "
        "daily digests checked every %d s, equity snapshots every %d s",
        EXPIRY_EVERY_S,
        ALERT_EXPIRY_EVERY_S,
        DIGEST_EVERY_S,
        SNAPSHOT_EVERY_S,
    )
    return scheduler
