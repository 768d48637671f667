"""The worker's scheduler: periodic jobs, each run once at a time and coalesced when late.

APScheduler 3 (4.x is still alpha). Jobs are thin: open a system_scope, call one core function, log one line.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from core.alerts.service import expire_alerts
from core.auth.service import purge_expired
from core.billing.entitlements import PRO
from core.billing.gateway import BillingGateway, BillingRejected, BillingUnavailable
from core.billing.service import receive_event
from core.billing.usage import mark_reported, overage_to_report
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
RECONCILE_EVERY_S = 24 * 3600
RECONCILE_LOOKBACK = timedelta(days=3)
USAGE_REPORT_EVERY_S = 300
AUTH_PURGE_EVERY_S = 3600


class WorkerJobs:
    def __init__(
        self, db: Database, hours: MarketHours, matcher: Matcher | None, billing: BillingGateway | None = None
    ) -> None:
        self.db = db
        self.hours = hours
        self.matcher = matcher
        self.billing = billing
        # Usage is reported only where there is a meter to report to (the simulator keeps it; Stripe needs one).
        self.billing_meters = billing is not None and billing.meters

    async def reconcile_billing(self) -> None:
        """Re-apply the events Stripe could not deliver (our endpoint was down, a deploy...), through the webhook's own
        path: already-applied ones are duplicates and change nothing."""
        if self.billing is None:
            return
        try:
            events = await self.billing.undelivered_events(self.hours.now() - RECONCILE_LOOKBACK)
        except BillingUnavailable as exc:
            log.warning("billing: reconciliation skipped, the provider is unavailable (%s)", exc)
            return
        applied = 0
        for event in events:
            try:
                outcome = await receive_event(self.db, self.billing, event, self.hours.now)
            except BillingUnavailable as exc:
                log.warning("billing: reconciliation stopped at %s, the provider is unavailable (%s)", event["id"], exc)
                return
            except Exception:
                log.exception("billing: reconciling %s failed; the next run tries again", event.get("id"))
                continue
            applied += outcome.status != "duplicate"
        log.info("billing: reconciliation saw %d undelivered event(s), applied %d", len(events), applied)

    async def report_usage(self) -> None:
        """Report Pro's AI questions beyond the included amount to the metered price, each once (its identifier)."""
        if self.billing is None:
            return
        now = self.hours.now()
        async with self.db.system_scope("billing.usage_report") as session:
            overage = await overage_to_report(session, now, included=PRO.ai_questions_per_day)
        reported: list[int] = []
        try:
            for item in overage:
                await self.billing.report_usage(
                    customer_id=item.customer_id, identifier=item.identifier, value=item.quantity, at=item.occurred_at
                )
                reported.append(item.usage_event_id)
        except (BillingUnavailable, BillingRejected) as exc:
            log.warning("billing: usage reporting paused after %d of %d (%s)", len(reported), len(overage), exc)
        finally:
            async with self.db.system_scope("billing.usage_report") as session:
                await mark_reported(session, reported, now)
        if reported:
            log.info("billing: reported %d AI question(s) beyond Pro's included amount", len(reported))

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

    async def purge_sign_ins(self) -> None:
        async with self.db.system_scope("auth.purge") as session:
            tokens, sessions = await purge_expired(session, self.hours.now())
        if tokens or sessions:
            log.info("auth: purged %d expired sign-in link(s) and %d expired session(s)", tokens, sessions)


def start_scheduler(jobs: WorkerJobs) -> AsyncIOScheduler:
    scheduler = AsyncIOScheduler(
        timezone=UTC, job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60}
    )
    scheduler.add_job(jobs.expire_orders, "interval", seconds=EXPIRY_EVERY_S, id="orders.expiry")
    scheduler.add_job(jobs.expire_alerts, "interval", seconds=ALERT_EXPIRY_EVERY_S, id="alerts.expiry")
    scheduler.add_job(jobs.expire_proposals, "interval", seconds=ALERT_EXPIRY_EVERY_S, id="orders.proposal_expiry")
    scheduler.add_job(jobs.daily_digests, "interval", seconds=DIGEST_EVERY_S, id="notifications.digest")
    scheduler.add_job(jobs.snapshot_equity, "interval", seconds=SNAPSHOT_EVERY_S, id="portfolio.snapshots")
    scheduler.add_job(jobs.purge_sign_ins, "interval", seconds=AUTH_PURGE_EVERY_S, id="auth.purge")
    if jobs.billing is not None:
        # First runs a minute after start: an interval trigger would otherwise wait a whole interval, and a process
        # restarted more often than daily would never reconcile.
        soon = datetime.now(UTC) + timedelta(seconds=60)
        scheduler.add_job(
            jobs.reconcile_billing, "interval", seconds=RECONCILE_EVERY_S, id="billing.reconcile", next_run_time=soon
        )
        if jobs.billing_meters:
            scheduler.add_job(
                jobs.report_usage, "interval", seconds=USAGE_REPORT_EVERY_S, id="billing.usage_report",
                next_run_time=soon,
            )  # fmt: skip
    scheduler.start()
    log.info(
        "scheduler: DAY-order expiry every %d s, alert and proposal expiry every %d s, "
        "daily digests checked every %d s, equity snapshots every %d s, expired sign-ins purged every %d s",
        EXPIRY_EVERY_S,
        ALERT_EXPIRY_EVERY_S,
        DIGEST_EVERY_S,
        SNAPSHOT_EVERY_S,
        AUTH_PURGE_EVERY_S,
    )
    return scheduler
