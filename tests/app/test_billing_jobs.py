"""The worker's billing jobs against the real Stripe client and a local Stripe stub: reconciliation re-applies
undelivered events through the webhook's own path, and Pro's AI questions beyond the included amount are reported
to the meter exactly once."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from app.scheduler import WorkerJobs
from app.stripe_gateway import StripeGateway
from bench.fake_stripe import FakeStripe, subscription, subscription_created, subscription_deleted
from core.billing.entitlements import PRO
from core.billing.service import receive_event
from core.db.database import Database, raw_connection, run_sql
from core.db.identity import resolve_identity
from core.market.sessions import MarketHours
from tests.helpers import Clock

METER = "tradedesk_ai_questions"


@pytest.fixture
async def stripe() -> AsyncIterator[tuple[FakeStripe, StripeGateway]]:
    async with FakeStripe() as fake:
        fake.add_price("price_pro")
        fake.add_meter(METER)
        gateway = StripeGateway(
            fake.api_key, price_pro="price_pro", price_pro_metered=None, meter_event=METER, api_base=fake.base_url,
            max_network_retries=0,
        )  # fmt: skip
        try:
            yield fake, gateway
        finally:
            await gateway.close()


def jobs(db: Database, gateway: StripeGateway, clock: Clock) -> WorkerJobs:
    return WorkerJobs(db, MarketHours(always_open=True, clock=clock), None, gateway)


async def test_reconciliation_applies_what_stripe_could_not_deliver_once(
    db: Database, stripe: tuple[FakeStripe, StripeGateway]
) -> None:
    fake, gateway = stripe
    clock = Clock(datetime.now(UTC))
    user = await resolve_identity(db, discord_id=777)
    customer = fake.add_customer(email="t@example.com")
    sub = fake.add_subscription(customer=customer["id"], metadata={"user_id": str(user)})
    fake.add_event(subscription_created(sub), delivered=False)  # our endpoint was down when it happened
    job = jobs(db, gateway, clock)
    await job.reconcile_billing()
    await job.reconcile_billing()  # the next day: still listed as undelivered, and a duplicate now
    async with db.user_scope(user) as s:
        c = await raw_connection(s)
        assert await c.fetchval("SELECT status FROM subscriptions") == "active"
        assert [r["title"] for r in await c.fetch("SELECT title FROM notifications")] == ["Welcome to Pro"]
    assert fake.requests_to("GET", "/v1/events")[0].query["delivery_success"] == "false"


async def test_overage_beyond_pros_included_questions_is_reported_once(
    db: Database, stripe: tuple[FakeStripe, StripeGateway]
) -> None:
    fake, gateway = stripe
    clock = Clock(datetime.now(UTC))
    pro = await resolve_identity(db, discord_id=1)
    free = await resolve_identity(db, discord_id=2)
    customer = fake.add_customer(email="pro@example.com")
    async with db.system_scope("test.billing") as s:
        await run_sql(s, text("INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES (:u, :c)"),
                      {"u": pro, "c": customer["id"]})  # fmt: skip
        await run_sql(
            s,
            text("INSERT INTO subscriptions (id, user_id, stripe_customer_id, plan, status) "
                 "VALUES ('sub_Pro1', :u, :c, 'pro', 'active')"),
            {"u": pro, "c": customer["id"]},
        )  # fmt: skip
        for user, questions in ((pro, PRO.ai_questions_per_day + 3), (free, 5)):
            await run_sql(
                s,
                text("INSERT INTO usage_events (user_id, kind, occurred_at) "
                     "SELECT :u, 'ai_question', :at FROM generate_series(1, :n)"),
                {"u": user, "n": questions, "at": clock() - timedelta(minutes=5)},
            )  # fmt: skip
    job = jobs(db, gateway, clock)
    await job.report_usage()
    await job.report_usage()  # nothing left to report
    events = fake.meter_events
    assert len(events) == 3 and {e["payload"]["stripe_customer_id"] for e in events} == {customer["id"]}
    assert len({e["identifier"] for e in events}) == 3
    async with db.system_scope("test.read") as s:
        left = await (await raw_connection(s)).fetchval("SELECT count(*) FROM usage_events WHERE reported_at IS NULL")
    assert left == 0
    # A crash after Stripe took the reports but before they were marked: the next run reports them again, and
    # their identifiers make Stripe count each once.
    async with db.system_scope("test.crash") as s:
        await run_sql(
            s,
            text("UPDATE usage_events SET reported_at = NULL WHERE id IN "
                 "(SELECT id FROM usage_events WHERE user_id = :u ORDER BY id DESC LIMIT 3)"),
            {"u": pro},
        )  # fmt: skip
    await job.report_usage()
    assert len(fake.meter_events) == 3
    async with db.system_scope("test.read") as s:
        left = await (await raw_connection(s)).fetchval("SELECT count(*) FROM usage_events WHERE reported_at IS NULL")
    assert left == 0


async def test_a_subscription_stripe_cannot_find_is_applied_from_the_events_own_snapshot(
    db: Database, stripe: tuple[FakeStripe, StripeGateway]
) -> None:
    _, gateway = stripe
    user = await resolve_identity(db, discord_id=888)
    sub = subscription(customer="cus_Unknown1", status="canceled", metadata={"user_id": str(user)})
    event = subscription_deleted(sub)  # the stub has no such subscription: retrieve answers resource_missing
    outcome = await receive_event(db, gateway, event, lambda: datetime.now(UTC))
    assert outcome.status == "applied"
    async with db.user_scope(user) as s:
        assert await (await raw_connection(s)).fetchval("SELECT status FROM subscriptions") == "canceled"
