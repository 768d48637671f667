"""POST /stripe/webhook over real HTTP into the real aiohttp app, with the real StripeGateway reading subscriptions
from bench.fake_stripe, on a fresh migrated database: each event type's effect, refusals that write nothing,
exactly once under concurrent delivery, order independence, and failed applies that Stripe's retry applies.

Events are the stub's real-shaped `event` objects, serialised and signed as Stripe sends them (`signed`). The
subscription state the webhook applies is whatever the stub answers at delivery time, so a test changes the stub
the way Stripe's own state would change before it delivers an event.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from aiohttp.test_utils import TestClient, TestServer

from app.stripe_gateway import StripeGateway
from bench.fake_stripe import (
    CompletedCheckout,
    FakeStripe,
    event,
    invoice,
    invoice_paid,
    invoice_payment_failed,
    sign,
    signed,
    subscription_deleted,
    subscription_trial_will_end,
    subscription_updated,
)
from core.billing.entitlements import entitlements
from core.billing.gateway import CheckoutRequest
from core.config import Settings
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from tests.helpers import stripe_gateway
from webhooks.app import create_app

SECRET = "whsec_test_webhook_tests_0123456789abcdef"
PRO = "price_pro_test"
PATH = "/stripe/webhook"


@dataclass
class Webhook:
    """The app under test, the stub behind its gateway, and the user who pays."""

    db: Database
    fake: FakeStripe
    gateway: StripeGateway
    client: TestClient[Any, Any]
    user: UUID

    async def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        resp = await self.client.post(PATH, data=body, headers=headers)
        return resp.status, await resp.json()

    async def deliver(self, evt: dict[str, Any], *, secret: str = SECRET, age_s: int = 0) -> tuple[int, dict[str, Any]]:
        body, headers = signed(evt, secret, int(time.time()) - age_s)
        return await self.post(body, headers)

    async def subscribe(self, *, trial_days: int | None = None) -> CompletedCheckout:
        """What /upgrade starts and the customer finishes: a Checkout session made through the real gateway, paid."""
        link = await self.gateway.create_checkout(
            CheckoutRequest(
                user_id=self.user,
                success_url="https://td.example/billing/success",
                cancel_url="https://td.example/billing/cancel",
                trial_days=trial_days,
                email="trader@example.com",
            )
        )
        return self.fake.complete_checkout(link.session_id)

    def subscription_reads(self, sub_id: str) -> int:
        return len(self.fake.requests_to("GET", f"/v1/subscriptions/{sub_id}"))


@pytest.fixture
async def hook(db: Database, tmp_path: Path) -> AsyncIterator[Webhook]:
    async with FakeStripe() as fake:
        fake.add_price(PRO, unit_amount=2000)
        gateway = stripe_gateway(fake, PRO)
        app = create_app(
            Settings(data_dir=tmp_path / "data", web_port=0),
            database=db,
            version="test",
            billing=gateway,
            webhook_secret=SECRET,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                user = await resolve_identity(db, discord_id=777000111)
                yield Webhook(db, fake, gateway, client, user)
        finally:
            await gateway.close()


def of_type(done: CompletedCheckout, kind: str) -> dict[str, Any]:
    (found,) = [e for e in done.events if e["type"] == kind]
    return found


async def tables(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Everything an event can write, read across tenants."""
    async with db.system_scope("test.read") as s:
        c = await raw_connection(s)
        queries = {
            "stripe_events": "SELECT id, type, status, customer_id, payload FROM stripe_events ORDER BY processed_at",
            "billing_customers": "SELECT user_id, stripe_customer_id FROM billing_customers",
            "subscriptions": "SELECT id, user_id, stripe_customer_id, status, current_period_end, trial_end,"
            " cancel_at_period_end, canceled_at, ended_at FROM subscriptions",
            "notifications": "SELECT user_id, kind, title, body, dedupe_key FROM notifications ORDER BY id",
        }
        return {name: [dict(r) for r in await c.fetch(sql)] for name, sql in queries.items()}


NOTHING: dict[str, list[dict[str, Any]]] = {
    "stripe_events": [],
    "billing_customers": [],
    "subscriptions": [],
    "notifications": [],
}


async def plan_of(hook: Webhook) -> str:
    async with hook.db.user_scope(hook.user) as s:
        return (await entitlements(s)).plan


async def dm_titles(hook: Webhook) -> list[str]:
    return [n["title"] for n in (await tables(hook.db))["notifications"]]


async def subscription_row(hook: Webhook) -> dict[str, Any]:
    (row,) = (await tables(hook.db))["subscriptions"]
    return row


def ts(value: int) -> datetime:
    return datetime.fromtimestamp(value, UTC)


def period_end(sub: dict[str, Any]) -> int:
    return int(sub["items"]["data"][0]["current_period_end"])


# --------------------------------------------------------------------------------------------- each event type


async def test_checkout_completed_links_the_customer_and_turns_pro_on_with_a_welcome_dm(hook: Webhook) -> None:
    done = await hook.subscribe()
    assert await plan_of(hook) == "free"

    assert await hook.deliver(of_type(done, "checkout.session.completed")) == (200, {"status": "applied"})

    state = await tables(hook.db)
    customer = done.subscription["customer"]
    assert state["billing_customers"] == [{"user_id": hook.user, "stripe_customer_id": customer}]
    assert [(s["id"], s["user_id"], s["status"]) for s in state["subscriptions"]] == [
        (done.subscription["id"], hook.user, "active")
    ]
    assert state["subscriptions"][0]["current_period_end"] == ts(period_end(done.subscription))
    assert await plan_of(hook) == "pro"
    assert [(n["user_id"], n["kind"], n["title"]) for n in state["notifications"]] == [
        (hook.user, "billing", "Welcome to Pro")
    ]
    assert hook.subscription_reads(done.subscription["id"]) == 1  # the state was re-fetched, not taken from the event
    # The other two events of the same checkout change nothing more: no second welcome.
    for kind in ("customer.subscription.created", "invoice.paid"):
        assert await hook.deliver(of_type(done, kind)) == (200, {"status": "applied"})
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_subscription_created_first_finds_the_user_from_its_metadata(hook: Webhook) -> None:
    """Stripe doesn't order a checkout's events: `created` may come before the checkout that links the customer."""
    done = await hook.subscribe()
    assert await hook.deliver(of_type(done, "customer.subscription.created")) == (200, {"status": "applied"})
    state = await tables(hook.db)
    assert state["billing_customers"] == [{"user_id": hook.user, "stripe_customer_id": done.subscription["customer"]}]
    assert (await subscription_row(hook))["status"] == "active"
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]
    assert await hook.deliver(of_type(done, "checkout.session.completed")) == (200, {"status": "applied"})
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_subscription_updated_applies_the_current_state(hook: Webhook) -> None:
    done = await hook.subscribe()
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    # The user cancels in the portal: Pro runs to the period's end.
    sub["cancel_at_period_end"], sub["cancel_at"] = True, period_end(sub)
    sub["canceled_at"] = int(time.time())
    evt = subscription_updated(sub, {"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None})
    assert await hook.deliver(evt) == (200, {"status": "applied"})
    row = await subscription_row(hook)
    assert (row["status"], row["cancel_at_period_end"]) == ("active", True)
    assert row["canceled_at"] == ts(sub["canceled_at"])
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_subscription_deleted_ends_pro_with_a_dm(hook: Webhook) -> None:
    done = await hook.subscribe()
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    now = int(time.time())
    sub.update(status="canceled", canceled_at=now, ended_at=now)
    assert await hook.deliver(subscription_deleted(sub)) == (200, {"status": "applied"})
    row = await subscription_row(hook)
    assert (row["status"], row["ended_at"]) == ("canceled", ts(now))
    assert await plan_of(hook) == "free"
    assert await dm_titles(hook) == ["Welcome to Pro", "You're on the Free plan now"]


async def test_invoice_paid_for_a_renewal_moves_the_period_on(hook: Webhook) -> None:
    done = await hook.subscribe()
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    old_end = period_end(sub)
    for item in sub["items"]["data"]:  # Stripe renews: the next period starts where the last one ended
        item["current_period_start"], item["current_period_end"] = old_end, old_end + 30 * 86400
    renewal = invoice(sub, billing_reason="subscription_cycle")
    sub["latest_invoice"] = renewal["id"]
    assert await hook.deliver(invoice_paid(renewal)) == (200, {"status": "applied"})
    assert (await subscription_row(hook))["current_period_end"] == ts(old_end + 30 * 86400)
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_invoice_payment_failed_dms_about_billing_and_keeps_pro_for_the_grace_period(hook: Webhook) -> None:
    done = await hook.subscribe()
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    now = int(time.time())
    for item in sub["items"]["data"]:  # the period that just ended, its renewal charge declined
        item["current_period_end"] = now - 3600
    sub["status"] = "past_due"
    failed = invoice(sub, status="open", billing_reason="subscription_cycle", next_payment_attempt=now + 86400)
    assert await hook.deliver(invoice_payment_failed(failed)) == (200, {"status": "applied"})
    assert (await subscription_row(hook))["status"] == "past_due"
    notes = (await tables(hook.db))["notifications"]
    assert [n["title"] for n in notes] == ["Welcome to Pro", "Payment failed"]
    assert "/billing" in notes[1]["body"]
    assert await plan_of(hook) == "pro"  # an hour past the period's end, within the 3-day grace


async def test_trial_will_end_is_a_dm_with_the_date(hook: Webhook) -> None:
    done = await hook.subscribe(trial_days=14)
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    assert (await subscription_row(hook))["status"] == "trialing"
    assert await hook.deliver(subscription_trial_will_end(sub)) == (200, {"status": "applied"})
    notes = (await tables(hook.db))["notifications"]
    ends = ts(sub["trial_end"])
    assert [n["title"] for n in notes] == ["Welcome to Pro", f"Your Pro trial ends on {ends:%Y-%m-%d}"]
    assert "/billing" in notes[1]["body"]


async def test_an_unhandled_type_is_acknowledged_and_ignored(hook: Webhook) -> None:
    evt = event("customer.created", hook.fake.add_customer(email="someone@example.com"))
    assert await hook.deliver(evt) == (200, {"status": "ignored"})
    state = await tables(hook.db)
    assert [(e["id"], e["status"]) for e in state["stripe_events"]] == [(evt["id"], "ignored")]
    assert {k: v for k, v in state.items() if k != "stripe_events"} == {k: [] for k in NOTHING if k != "stripe_events"}
    assert hook.fake.requests == []  # nothing to fetch for it


async def test_an_event_for_an_unknown_customer_is_unlinked_and_kept_with_its_payload(hook: Webhook) -> None:
    stranger = hook.fake.add_subscription(customer=hook.fake.add_customer()["id"], prices=[PRO])  # no user_id
    stranger["cancel_at_period_end"] = True
    evt = subscription_updated(stranger, {"cancel_at_period_end": False})
    assert await hook.deliver(evt) == (200, {"status": "unlinked"})
    state = await tables(hook.db)
    (row,) = state["stripe_events"]
    payload = row["payload"] if isinstance(row["payload"], dict) else json.loads(row["payload"])
    assert (row["id"], row["status"], row["customer_id"]) == (evt["id"], "unlinked", stranger["customer"])
    assert payload == evt
    assert {k: v for k, v in state.items() if k != "stripe_events"} == {k: [] for k in NOTHING if k != "stripe_events"}


# ------------------------------------------------------------------------------------------------- refusals


async def test_a_bad_signature_is_400_and_writes_nothing(hook: Webhook) -> None:
    done = await hook.subscribe()
    status, body = await hook.deliver(of_type(done, "checkout.session.completed"), secret="whsec_someone_else")
    assert (status, body) == (400, {"error": "invalid signature"})
    assert await tables(hook.db) == NOTHING
    assert hook.subscription_reads(done.subscription["id"]) == 0  # refused before anything else happened


@pytest.mark.parametrize(("age_s", "expected"), [(301, 400), (600, 400), (240, 200)])
async def test_a_signature_older_than_300_s_is_400_and_writes_nothing(hook: Webhook, age_s: int, expected: int) -> None:
    done = await hook.subscribe()
    status, _ = await hook.deliver(of_type(done, "checkout.session.completed"), age_s=age_s)
    assert status == expected
    if expected == 400:
        assert await tables(hook.db) == NOTHING
        assert hook.subscription_reads(done.subscription["id"]) == 0
    else:  # within the tolerance: the same event is applied
        assert await plan_of(hook) == "pro"


@pytest.mark.parametrize("header", [None, "", "t=123", "v1=deadbeef", "garbage"])
async def test_a_missing_or_unreadable_signature_header_is_400(hook: Webhook, header: str | None) -> None:
    done = await hook.subscribe()
    body, headers = signed(of_type(done, "checkout.session.completed"), SECRET)
    if header is None:
        del headers["Stripe-Signature"]
    else:
        headers["Stripe-Signature"] = header
    assert await hook.post(body, headers) == (400, {"error": "invalid signature"})
    assert await tables(hook.db) == NOTHING


async def test_malformed_json_with_a_valid_signature_is_400_and_writes_nothing(hook: Webhook) -> None:
    done = await hook.subscribe()
    good, _ = signed(of_type(done, "checkout.session.completed"), SECRET)
    for raw in (good[: len(good) // 2], b"{not json", '{"id": "evt_\u00e9"'.encode()):
        headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sign(raw, SECRET)}
        assert await hook.post(raw, headers) == (400, {"error": "not a Stripe event"}), raw
    assert await tables(hook.db) == NOTHING
    assert hook.subscription_reads(done.subscription["id"]) == 0


@pytest.mark.parametrize(
    "not_an_event",
    [
        [],
        "evt_1",
        42,
        None,
        {},
        {"id": "cs_test_1", "type": "checkout.session.completed", "data": {"object": {}}},  # not an event id
        {"id": "evt_1NoType", "data": {"object": {}}},
        {"id": "evt_1NoData", "type": "invoice.paid"},
        {"id": "evt_1BadData", "type": "invoice.paid", "data": {"object": "in_1"}},
        {"id": "evt_1BadData", "type": "invoice.paid", "data": []},
        {"id": 17, "type": "invoice.paid", "data": {"object": {}}},
    ],
)
async def test_json_that_is_not_an_event_is_400_and_writes_nothing(hook: Webhook, not_an_event: Any) -> None:
    body = json.dumps(not_an_event).encode()
    headers = {"Content-Type": "application/json; charset=utf-8", "Stripe-Signature": sign(body, SECRET)}
    assert await hook.post(body, headers) == (400, {"error": "not a Stripe event"})
    assert await tables(hook.db) == NOTHING


async def test_the_signature_is_checked_over_the_raw_bytes(hook: Webhook) -> None:
    """The same JSON with other whitespace is other bytes: the original signature doesn't cover it."""
    done = await hook.subscribe()
    body, headers = signed(of_type(done, "checkout.session.completed"), SECRET)
    compact = json.dumps(json.loads(body), separators=(",", ":")).encode()
    assert json.loads(compact) == json.loads(body) and compact != body
    assert await hook.post(compact, headers) == (400, {"error": "invalid signature"})
    assert await tables(hook.db) == NOTHING
    assert await hook.post(body, headers) == (200, {"status": "applied"})  # the bytes it was signed over


# ---------------------------------------------------------------------------------------------- exactly once


async def test_the_same_event_posted_ten_times_at_once_has_one_effect(hook: Webhook) -> None:
    done = await hook.subscribe()
    body, headers = signed(of_type(done, "checkout.session.completed"), SECRET)
    answers = await asyncio.gather(*(hook.post(body, headers) for _ in range(10)))
    assert sorted(a[1]["status"] for a in answers) == ["applied"] + ["duplicate"] * 9
    assert {a[0] for a in answers} == {200}
    state = await tables(hook.db)
    assert len(state["stripe_events"]) == 1
    assert [n["title"] for n in state["notifications"]] == ["Welcome to Pro"]
    assert len(state["subscriptions"]) == 1 and len(state["billing_customers"]) == 1


# ------------------------------------------------------------------------------------------ order independence


async def test_updated_delivered_before_created_ends_in_the_current_state(hook: Webhook) -> None:
    done = await hook.subscribe(trial_days=7)
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    created = of_type(done, "customer.subscription.created")  # its snapshot says trialing
    # The user ends the trial early and pays: Stripe's state moves on, and `updated` overtakes `created`.
    now = int(time.time())
    sub.update(status="active", trial_end=now)
    for item in sub["items"]["data"]:
        item["current_period_start"], item["current_period_end"] = now, now + 30 * 86400
    updated = subscription_updated(sub, {"status": "trialing", "trial_end": created["data"]["object"]["trial_end"]})
    assert await hook.deliver(updated) == (200, {"status": "applied"})
    assert await hook.deliver(created) == (200, {"status": "applied"})
    row = await subscription_row(hook)
    assert (row["status"], row["trial_end"], row["current_period_end"]) == ("active", ts(now), ts(now + 30 * 86400))
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_deleted_delivered_before_updated_stays_canceled(hook: Webhook) -> None:
    done = await hook.subscribe()
    await hook.deliver(of_type(done, "checkout.session.completed"))
    sub = done.subscription
    # The user cancels at period end (an `updated` event), then the subscription ends (a `deleted` event) ...
    now = int(time.time())
    sub.update(cancel_at_period_end=True, cancel_at=period_end(sub), canceled_at=now)
    updated = subscription_updated(json.loads(json.dumps(sub)), {"cancel_at_period_end": False, "canceled_at": None})
    sub.update(status="canceled", ended_at=now + 1)
    deleted = subscription_deleted(sub)
    # ... and Stripe delivers them the other way round.
    assert await hook.deliver(deleted) == (200, {"status": "applied"})
    assert await hook.deliver(updated) == (200, {"status": "applied"})
    row = await subscription_row(hook)
    assert (row["status"], row["ended_at"]) == ("canceled", ts(now + 1))
    assert await plan_of(hook) == "free"
    assert await dm_titles(hook) == ["Welcome to Pro", "You're on the Free plan now"]


# ------------------------------------------------------------------------------------------ failure and retry


async def test_stripe_unreadable_is_503_writes_nothing_and_the_retry_applies_it(hook: Webhook) -> None:
    done = await hook.subscribe()
    sub_path = f"/v1/subscriptions/{done.subscription['id']}"
    body, headers = signed(of_type(done, "checkout.session.completed"), SECRET)
    hook.fake.fail_next(500, path=sub_path)
    assert await hook.post(body, headers) == (503, {"error": "billing provider unavailable; retry"})
    assert hook.fake.last("GET", sub_path).status == 500
    assert await tables(hook.db) == NOTHING
    assert await hook.post(body, headers) == (200, {"status": "applied"})  # Stripe's retry
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_an_apply_that_fails_in_the_transaction_is_500_records_nothing_and_the_retry_applies_it(
    hook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    """A status the subscriptions table refuses (as a status Stripe added one day would be) fails the apply midway,
    after the event id and the customer link were written: all of it rolls back."""
    done = await hook.subscribe()
    sub = done.subscription
    body, headers = signed(of_type(done, "checkout.session.completed"), SECRET)
    sub["status"] = "on_hold"  # not in subscriptions_status_check
    assert await hook.post(body, headers) == (500, {"error": "could not apply the event; retry"})
    assert "subscriptions_status_check" in caplog.text  # it failed where we meant it to, inside the transaction
    assert await tables(hook.db) == NOTHING
    sub["status"] = "active"
    assert await hook.post(body, headers) == (200, {"status": "applied"})  # Stripe's retry
    state = await tables(hook.db)
    assert [(e["id"], e["status"]) for e in state["stripe_events"]] == [
        (of_type(done, "checkout.session.completed")["id"], "applied")
    ]
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]


async def test_a_checkouts_three_events_delivered_at_once_welcome_the_user_once(hook: Webhook) -> None:
    """Stripe sends created, invoice.paid and checkout.session.completed together, in no promised order."""
    done = await hook.subscribe()
    answers = await asyncio.gather(*(hook.deliver(e) for e in done.events))
    assert answers == [(200, {"status": "applied"})] * 3
    assert await plan_of(hook) == "pro"
    assert await dm_titles(hook) == ["Welcome to Pro"]
