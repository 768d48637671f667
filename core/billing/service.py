"""Applying Stripe events: exactly once, in any order, in the webhook's one transaction.

The transport verifies the signature over the raw bytes, fetches the subscription's *current* state from Stripe
before it opens the transaction (event.created has one-second resolution and can't order events, so the state each
event carried may be stale), and then calls `apply_stripe_event` inside one system_scope transaction:

1. the event id is inserted into stripe_events (ON CONFLICT DO NOTHING): a duplicate, or a concurrent delivery of
   the same event (which waits on the primary key until the first commits or rolls back), changes nothing;
2. the event is applied: the customer linked to the user, the subscription upserted from the fetched state (an
   older fetch never overwrites a newer one: synced_at), DMs written to the outbox.

If applying fails, the whole transaction rolls back, the event id included, so Stripe's retry applies it again.
Events for a customer we can't link to a user yet are recorded with their payload ('unlinked'), not lost: the
checkout.session.completed that links the customer applies the subscription's current state anyway.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg

from core.billing.entitlements import IS_PRO, PAST_DUE_GRACE
from core.billing.gateway import BillingGateway, SubscriptionState, subscription_state
from core.db.database import Database, Scope, scope_connection
from core.live import notify_live
from core.notifications.outbox import enqueue

log = logging.getLogger(__name__)

HANDLED = (
    "checkout.session.completed",
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "invoice.paid",
    "invoice.payment_failed",
    "customer.subscription.trial_will_end",
)


@dataclass(frozen=True)
class Applied:
    status: str  # applied | duplicate | ignored | unlinked
    user_id: UUID | None = None


def subscription_id_of(event: dict[str, Any]) -> str | None:
    """The subscription an event is about, wherever this event type keeps it (so its state can be fetched)."""
    obj = event.get("data", {}).get("object", {}) or {}
    kind = str(event.get("type", ""))
    if kind.startswith("customer.subscription."):
        value = obj.get("id")
    elif kind == "checkout.session.completed":
        value = obj.get("subscription")
    elif kind.startswith("invoice."):
        parent = (obj.get("parent") or {}).get("subscription_details") or {}
        value = parent.get("subscription") or obj.get("subscription")  # older API versions: on the invoice
    else:
        value = None
    return value if isinstance(value, str) and value.startswith("sub_") else None


def _uuid(value: Any) -> UUID | None:
    try:
        return UUID(str(value))
    except ValueError:
        return None


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


async def _user_for(conn: asyncpg.Connection, customer_id: str | None, *hints: Any) -> tuple[UUID | None, bool]:
    """The user of a customer: the link we keep, else the user id Checkout put in the metadata; and whether the
    customer is already linked to that user (then there is nothing to link)."""
    if customer_id:
        linked: UUID | None = await conn.fetchval(
            "SELECT user_id FROM billing_customers WHERE stripe_customer_id = $1", customer_id
        )
        if linked is not None:
            return linked, True
    for hint in hints:
        user = _uuid(hint)
        if user is not None and await conn.fetchval("SELECT true FROM users WHERE id = $1", user):
            return user, False
    return None, False


async def _link(conn: asyncpg.Connection, user_id: UUID, customer_id: str, livemode: bool) -> None:
    await conn.execute(
        "INSERT INTO billing_customers (user_id, stripe_customer_id, livemode) VALUES ($1, $2, $3)"
        " ON CONFLICT (user_id) DO UPDATE SET stripe_customer_id = EXCLUDED.stripe_customer_id",
        user_id,
        customer_id,
        livemode,
    )


async def _is_pro(conn: asyncpg.Connection, user_id: UUID, now: datetime) -> bool:
    return bool(await conn.fetchval(IS_PRO, user_id, now, PAST_DUE_GRACE))


async def _upsert(conn: asyncpg.Connection, user_id: UUID, state: SubscriptionState, fetched_at: datetime) -> None:
    """The subscription as Stripe has it now; a snapshot older than the stored one changes nothing."""
    await conn.execute(
        """
        INSERT INTO subscriptions (id, user_id, stripe_customer_id, plan, status, price_id, current_period_end,
                                   trial_end, cancel_at_period_end, canceled_at, ended_at, synced_at, created_at,
                                   past_due_since)
        VALUES ($1, $2, $3, 'pro', $4, $5, $6, $7, $8, $9, $10, $11, $12,
                CASE WHEN $4::text = 'past_due' THEN $11::timestamptz END)
        ON CONFLICT (id) DO UPDATE SET
            past_due_since = CASE WHEN EXCLUDED.status <> 'past_due' THEN NULL
                                  WHEN subscriptions.status = 'past_due' THEN subscriptions.past_due_since
                                  ELSE EXCLUDED.synced_at END,
            status = EXCLUDED.status, price_id = EXCLUDED.price_id, current_period_end = EXCLUDED.current_period_end,
            trial_end = EXCLUDED.trial_end, cancel_at_period_end = EXCLUDED.cancel_at_period_end,
            canceled_at = EXCLUDED.canceled_at, ended_at = EXCLUDED.ended_at, synced_at = EXCLUDED.synced_at
        WHERE subscriptions.synced_at <= EXCLUDED.synced_at
        """,
        state.id,
        user_id,
        state.customer_id,
        state.status,
        state.price_ids[0] if state.price_ids else None,
        state.current_period_end,
        state.trial_end,
        state.cancel_at_period_end,
        state.canceled_at,
        state.ended_at,
        fetched_at,
        state.created,
    )


async def _dm(conn: asyncpg.Connection, user_id: UUID, event_id: str, what: str, title: str, body: str) -> None:
    # The dedupe key ties the DM to the event: a re-applied event can't DM twice.
    await enqueue(conn, user_id, "billing", f"stripe:{event_id}:{what}", title, body)


async def apply_stripe_event(
    scope: Scope,
    event: dict[str, Any],
    subscription: SubscriptionState | None,
    *,
    fetched_at: datetime,
) -> Applied:
    """Record and apply one verified event (see the module docstring); never commits."""
    conn = await scope_connection(scope)
    event_id, kind = str(event["id"]), str(event["type"])
    obj: dict[str, Any] = event.get("data", {}).get("object", {}) or {}
    customer_id = obj.get("customer") if isinstance(obj.get("customer"), str) else None
    if subscription is not None:
        customer_id = subscription.customer_id
    inserted = await conn.fetchval(
        "INSERT INTO stripe_events (id, type, created, livemode, customer_id, status) VALUES ($1, $2, $3, $4, $5,"
        " 'applied') ON CONFLICT (id) DO NOTHING RETURNING true",
        event_id,
        kind,
        _ts(event.get("created")) or fetched_at,
        bool(event.get("livemode", False)),
        customer_id,
    )
    if not inserted:
        return Applied("duplicate")
    if kind not in HANDLED:
        await conn.execute("UPDATE stripe_events SET status = 'ignored' WHERE id = $1", event_id)
        return Applied("ignored")

    metadata = (subscription.metadata if subscription else None) or obj.get("metadata") or {}
    user, linked = await _user_for(conn, customer_id, obj.get("client_reference_id"), metadata.get("user_id"))
    if user is None:
        await conn.execute(
            "UPDATE stripe_events SET status = 'unlinked', payload = $2::jsonb WHERE id = $1",
            event_id,
            json.dumps(event),
        )
        log.warning(
            "billing: %s %s is for customer %s, not linked to a user yet; recorded", kind, event_id, customer_id
        )
        return Applied("unlinked")

    # Stripe delivers a checkout's events (subscription created, invoice paid, session completed) at once: serialise
    # one user's applies, or each would read "wasn't Pro" before the others commit and each would welcome the user.
    await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended('billing:' || $1, 0))", str(user))
    was_pro = await _is_pro(conn, user, fetched_at)
    if customer_id and not linked:  # linked already: the upsert would rewrite the same row for nothing
        await _link(conn, user, customer_id, bool(event.get("livemode", False)))
    if subscription is not None:
        await _upsert(conn, user, subscription, fetched_at)
    is_pro = await _is_pro(conn, user, fetched_at)

    if kind == "invoice.payment_failed":
        await _dm(
            conn, user, event_id, "payment_failed", "Payment failed",
            "We couldn't charge your card for TradeDesk Pro. Run /billing to update your payment method; Pro stays "
            f"on for a grace period of {PAST_DUE_GRACE.days} days.",
        )  # fmt: skip
    elif kind == "customer.subscription.trial_will_end":
        ends = (subscription.trial_end if subscription else None) or _ts(obj.get("trial_end"))
        when = f" on {ends:%Y-%m-%d}" if ends else " soon"
        await _dm(
            conn, user, event_id, "trial_ending", "Your Pro trial ends" + when,
            "Your TradeDesk Pro trial ends" + when + ". It continues as a paid subscription unless you cancel in "
            "/billing.",
        )  # fmt: skip
    if is_pro and not was_pro:
        await _dm(conn, user, event_id, "upgraded", "Welcome to Pro", "TradeDesk Pro is active: more alerts, more AI "
                  "questions a day, and every order type. /billing manages your subscription.")  # fmt: skip
    elif was_pro and not is_pro:
        await _dm(conn, user, event_id, "downgraded", "You're on the Free plan now", "Your TradeDesk Pro subscription "
                  "has ended; your data stays, with the Free plan's limits. /upgrade any time.")  # fmt: skip
    await notify_live(conn, {user: ("plan",)})  # the user's live dashboard shows the new plan once this commits
    return Applied("applied", user)


async def receive_event(
    database: Database, gateway: BillingGateway, event: dict[str, Any], clock: Callable[[], datetime]
) -> Applied:
    """The one path of a verified event, for the webhook and the reconciliation job alike: fetch the subscription's
    current state (outside any transaction; BillingUnavailable when the provider can't be read), then record and
    apply it in one system_scope transaction. Raises if applying fails: nothing is recorded then."""
    subscription_id = subscription_id_of(event) if event.get("type") in HANDLED else None  # others: no API call
    state = await gateway.retrieve_subscription(subscription_id) if subscription_id else None
    fetched_at = clock()
    if state is None and subscription_id and str(event["type"]).startswith("customer.subscription."):
        # The provider doesn't know it (a key for the other mode, a deleted test object): rather than record the
        # event as applied with no effect, apply the snapshot it carries, dated to the event so that any state
        # fetched later (or earlier) wins over it.
        log.warning("billing: %s %s: %s can't be read; applying the event's own snapshot", event["type"],
                    event["id"], subscription_id)  # fmt: skip
        state = subscription_state(event["data"]["object"])
        fetched_at = _ts(event.get("created")) or fetched_at
    # The bare-connection form of system_scope: one round trip fewer and no ORM session, on the webhook's hot path.
    async with database.system_connection("billing.stripe_event") as conn:
        return await apply_stripe_event(conn, event, state, fetched_at=fetched_at)


async def customer_of(scope: Scope, user_id: UUID) -> str | None:
    conn = await scope_connection(scope)
    found: str | None = await conn.fetchval(
        "SELECT stripe_customer_id FROM billing_customers WHERE user_id = $1", user_id
    )
    return found


async def ever_subscribed(scope: Scope, user_id: UUID) -> bool:
    """Whether the user had a subscription before (a trial is for first-time subscribers only)."""
    conn = await scope_connection(scope)
    return bool(await conn.fetchval("SELECT EXISTS (SELECT 1 FROM subscriptions WHERE user_id = $1)", user_id))
