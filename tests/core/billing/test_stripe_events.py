"""Applying Stripe events in core, on the real database: effects, exactly once, any order, failures rolled back."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

import pytest

from core.billing.entitlements import entitlements
from core.billing.gateway import SubscriptionState
from core.billing.service import apply_stripe_event, subscription_id_of
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity

NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
CUSTOMER = "cus_TestCustomer1"
SUB = "sub_TestSubscription1"


def state(status: str = "active", **kw: Any) -> SubscriptionState:
    base = SubscriptionState(
        id=SUB,
        customer_id=CUSTOMER,
        status=status,
        price_ids=("price_pro",),
        current_period_end=NOW + timedelta(days=30),
        trial_end=None,
        cancel_at_period_end=False,
        canceled_at=None,
        ended_at=None,
        created=NOW - timedelta(days=1),
        metadata={},
    )
    return replace(base, **kw)


def event(kind: str, obj: dict[str, Any], n: int = 1) -> dict[str, Any]:
    return {
        "id": f"evt_Test{kind.replace('.', '').replace('_', '')}{n}",
        "object": "event",
        "type": kind,
        "created": int(NOW.timestamp()),
        "livemode": False,
        "data": {"object": obj},
    }


def checkout(user: UUID, n: int = 1) -> dict[str, Any]:
    return event(
        "checkout.session.completed",
        {"id": "cs_test_1", "object": "checkout.session", "client_reference_id": str(user), "customer": CUSTOMER,
         "subscription": SUB, "metadata": {"user_id": str(user)}, "mode": "subscription"},
        n,
    )  # fmt: skip


def sub_event(kind: str, n: int = 1, status: str = "active") -> dict[str, Any]:
    return event(kind, {"id": SUB, "object": "subscription", "customer": CUSTOMER, "status": status}, n)


async def apply(db: Database, evt: dict[str, Any], st: SubscriptionState | None, at: datetime = NOW) -> str:
    async with db.system_scope("test.stripe_webhook") as s:
        return (await apply_stripe_event(s, evt, st, fetched_at=at)).status


async def plan_of(db: Database, user: UUID) -> str:
    async with db.user_scope(user) as s:
        return (await entitlements(s)).plan


async def dms(db: Database, user: UUID) -> list[str]:
    async with db.user_scope(user) as s:
        rows = await (await raw_connection(s)).fetch("SELECT title FROM notifications ORDER BY id")
    return [r["title"] for r in rows]


async def stored(db: Database) -> dict[str, Any]:
    async with db.system_scope("test.read") as s:
        c = await raw_connection(s)
        sub = await c.fetchrow("SELECT status, synced_at FROM subscriptions WHERE id = $1", SUB)
        events = {r["id"]: r["status"] for r in await c.fetch("SELECT id, status FROM stripe_events")}
    return {"sub": dict(sub) if sub else None, "events": events}


@pytest.fixture
async def user(db: Database) -> UUID:
    return await resolve_identity(db, discord_id=424242)


def test_the_subscription_of_each_event_type_is_found() -> None:
    assert subscription_id_of(sub_event("customer.subscription.updated")) == SUB
    assert subscription_id_of(checkout(UUID(int=1))) == SUB
    invoice = {"id": "in_1", "parent": {"subscription_details": {"subscription": SUB}}}
    assert subscription_id_of(event("invoice.paid", invoice)) == SUB
    assert subscription_id_of(event("invoice.paid", {"id": "in_1", "subscription": SUB})) == SUB  # older API
    assert subscription_id_of(event("customer.created", {"id": CUSTOMER})) is None


async def test_checkout_links_the_customer_and_turns_pro_on_with_one_dm(db: Database, user: UUID) -> None:
    assert await plan_of(db, user) == "free"
    assert await apply(db, checkout(user), state("active")) == "applied"
    assert await plan_of(db, user) == "pro"
    assert await dms(db, user) == ["Welcome to Pro"]
    assert await apply(db, checkout(user), state("active")) == "duplicate"  # Stripe's retry
    assert await apply(db, sub_event("customer.subscription.created"), state("active")) == "applied"
    assert await dms(db, user) == ["Welcome to Pro"]  # still one


async def test_the_same_event_delivered_ten_times_at_once_has_one_effect(db: Database, user: UUID) -> None:
    outcomes = await asyncio.gather(*(apply(db, checkout(user), state("active")) for _ in range(10)))
    assert sorted(outcomes) == ["applied"] + ["duplicate"] * 9
    assert await dms(db, user) == ["Welcome to Pro"]


async def test_updated_before_created_ends_in_the_current_state(db: Database, user: UUID) -> None:
    await apply(db, checkout(user), state("trialing"), NOW)
    # Delivered out of order: each applies the state fetched from Stripe when it was processed.
    await apply(db, sub_event("customer.subscription.updated", 1), state("active"), NOW + timedelta(seconds=2))
    await apply(db, sub_event("customer.subscription.created", 1), state("active"), NOW + timedelta(seconds=3))
    assert (await stored(db))["sub"]["status"] == "active"


async def test_deleted_before_updated_stays_canceled_and_an_older_fetch_never_wins(db: Database, user: UUID) -> None:
    await apply(db, checkout(user), state("active"), NOW)
    canceled = state("canceled", canceled_at=NOW, ended_at=NOW)
    await apply(db, sub_event("customer.subscription.deleted"), canceled, NOW + timedelta(seconds=5))
    # The 'updated' event arrives late; its transport fetched the state before the deletion (a slower request).
    await apply(db, sub_event("customer.subscription.updated"), state("active"), NOW + timedelta(seconds=4))
    assert (await stored(db))["sub"]["status"] == "canceled"
    assert await plan_of(db, user) == "free"
    assert await dms(db, user) == ["Welcome to Pro", "You're on the Free plan now"]


async def test_a_failed_payment_dms_the_user_and_keeps_pro_for_the_grace_period(db: Database, user: UUID) -> None:
    await apply(db, checkout(user), state("active"))
    invoice = {"id": "in_1", "customer": CUSTOMER, "parent": {"subscription_details": {"subscription": SUB}}}
    past_due = state("past_due", current_period_end=NOW)
    assert await apply(db, event("invoice.payment_failed", invoice), past_due, NOW) == "applied"
    titles = await dms(db, user)
    assert titles == ["Welcome to Pro", "Payment failed"]
    async with db.user_scope(user) as s:
        body = await (await raw_connection(s)).fetchval("SELECT body FROM notifications WHERE title = 'Payment failed'")
    assert "/billing" in body
    assert await plan_of(db, user) == "pro"  # within 3 days of the period's end
    await apply(db, sub_event("customer.subscription.updated", 2, "unpaid"), state("unpaid"), NOW + timedelta(days=4))
    assert await plan_of(db, user) == "free"


async def test_trial_ending_is_a_dm(db: Database, user: UUID) -> None:
    trial_end = NOW + timedelta(days=3)
    await apply(db, checkout(user), state("trialing", trial_end=trial_end))
    await apply(db, sub_event("customer.subscription.trial_will_end"), state("trialing", trial_end=trial_end))
    assert await dms(db, user) == ["Welcome to Pro", f"Your Pro trial ends on {trial_end:%Y-%m-%d}"]


async def test_an_event_for_an_unknown_customer_is_recorded_not_lost(db: Database, user: UUID) -> None:
    evt = sub_event("customer.subscription.updated")
    assert await apply(db, evt, state("active")) == "unlinked"
    async with db.system_scope("test.read") as s:
        payload = await (await raw_connection(s)).fetchval("SELECT payload FROM stripe_events WHERE id = $1", evt["id"])
    assert (payload if isinstance(payload, dict) else json.loads(payload))["id"] == evt["id"]
    # The checkout that links the customer applies the subscription's current state.
    await apply(db, checkout(user), state("active"))
    assert await plan_of(db, user) == "pro"


async def test_other_event_types_are_acknowledged_and_ignored(db: Database) -> None:
    evt = event("customer.created", {"id": CUSTOMER, "object": "customer"})
    assert await apply(db, evt, None) == "ignored"
    assert (await stored(db))["events"] == {evt["id"]: "ignored"}


async def test_an_apply_that_fails_records_nothing_and_the_retry_applies_it(db: Database, user: UUID) -> None:
    broken = state("bogus")  # a status the table refuses: the apply fails midway
    with pytest.raises(Exception, match="subscriptions_status_check"):
        await apply(db, checkout(user), broken)
    assert await stored(db) == {"sub": None, "events": {}}
    assert await dms(db, user) == []
    assert await apply(db, checkout(user), state("active")) == "applied"  # Stripe's retry
    assert await plan_of(db, user) == "pro" and await dms(db, user) == ["Welcome to Pro"]


async def test_the_grace_period_counts_from_when_payment_failed_not_from_the_period_end(
    db: Database, user: UUID
) -> None:
    # Stripe moves the period on at the renewal, before the charge fails: the period ends a month from now.
    now = datetime.now(UTC)
    renewed = state("past_due", current_period_end=now + timedelta(days=30))
    await apply(db, checkout(user), state("active"), now - timedelta(days=5))
    await apply(db, sub_event("customer.subscription.updated", 1, "past_due"), renewed, now - timedelta(days=2))
    assert await plan_of(db, user) == "pro"  # two days into the three-day grace
    # Still past due at a later sync: the grace keeps counting from the first failure.
    await apply(db, sub_event("customer.subscription.updated", 2, "past_due"), renewed, now - timedelta(days=1))
    async with db.system_scope("test.age") as s:
        await (await raw_connection(s)).execute(
            "UPDATE subscriptions SET past_due_since = past_due_since - interval '2 days'"
        )
    assert await plan_of(db, user) == "free"  # four days past due: the card wasn't fixed
