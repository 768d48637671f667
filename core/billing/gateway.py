"""`BillingGateway`: what core needs from a billing provider, and the values that cross it.

Implementations: the Stripe gateway (app/, over `stripe.StripeClient`'s async methods) and the offline billing
simulator (the local default). Core never imports either; the composition root picks one. Every method is a network
call: callers make them outside database transactions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID


class BillingUnavailable(Exception):
    """The provider could not be reached or failed on its side (network error, timeout, 5xx, 429, 409 lock timeout).

    Nothing is known to have happened: the caller tries again later (the webhook answers 5xx so the provider retries,
    a usage report stays unsent, a command tells the user billing is unavailable right now).
    """


class BillingRejected(Exception):
    """The provider refused the request (4xx): retrying the same request won't help.

    Usually a configuration error (a wrong key or price id) or a stale id; `code` and `param` are the provider's.
    """

    def __init__(self, message: str, *, status: int | None, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.param = param


@dataclass(frozen=True)
class CheckoutRequest:
    user_id: UUID  # client_reference_id, and metadata on the session and on the subscription it creates
    success_url: str
    cancel_url: str
    customer_id: str | None = None  # reuse the user's Stripe customer when they have one
    trial_days: int | None = None  # first-time subscribers only
    email: str | None = None


@dataclass(frozen=True)
class CheckoutLink:
    session_id: str
    url: str


@dataclass(frozen=True)
class SubscriptionState:
    """A subscription as the provider has it now (re-fetched for every subscription event: events can't be ordered)."""

    id: str
    customer_id: str
    status: str  # incomplete, incomplete_expired, trialing, active, past_due, canceled, unpaid, paused
    price_ids: tuple[str, ...]
    current_period_end: datetime | None  # on the subscription items in current API versions
    trial_end: datetime | None
    cancel_at_period_end: bool
    canceled_at: datetime | None
    ended_at: datetime | None
    created: datetime
    metadata: dict[str, str] = field(default_factory=dict)  # user_id, set through subscription_data.metadata


class BillingGateway(Protocol):
    """Every method raises `BillingUnavailable` for "try later" and `BillingRejected` for a refused request."""

    mode: str  # "stripe" or "simulator": for logs and replies

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink: ...

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        """A Billing Portal session URL (short-lived: never sent through the outbox)."""
        ...

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None:
        """The subscription's current state, or None when the provider doesn't know it."""
        ...

    async def undelivered_events(self, since: datetime) -> list[dict[str, Any]]:
        """Events the provider could not deliver to our webhook since `since` (for the daily reconciliation)."""
        ...

    async def report_usage(self, *, customer_id: str, identifier: str, value: int, at: datetime) -> None:
        """One metered usage event; `identifier` makes a retried report count once."""
        ...

    async def close(self) -> None:
        """Release the gateway's connections (at shutdown)."""
        ...


def subscription_state(sub: dict[str, Any]) -> SubscriptionState:
    """A Stripe `subscription` (plain JSON) as core's SubscriptionState. The period end lives on the items in current
    API versions; with several items (licensed + metered) the subscription runs until the latest of them."""
    items = (sub.get("items") or {}).get("data") or []
    ends = [int(i["current_period_end"]) for i in items if i.get("current_period_end") is not None]
    if not ends and sub.get("current_period_end") is not None:  # API versions before 2025-03-31
        ends = [int(sub["current_period_end"])]
    customer = sub.get("customer")
    if isinstance(customer, dict):  # expanded
        customer = customer.get("id")
    return SubscriptionState(
        id=str(sub["id"]),
        customer_id=str(customer),
        status=str(sub["status"]),
        price_ids=tuple(str(i["price"]["id"]) for i in items if i.get("price")),
        current_period_end=_ts(max(ends)) if ends else None,
        trial_end=_ts(sub.get("trial_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        canceled_at=_ts(sub.get("canceled_at")),
        ended_at=_ts(sub.get("ended_at")),
        created=_ts(sub["created"]) or datetime.fromtimestamp(0, tz=UTC),
        metadata={str(k): str(v) for k, v in (sub.get("metadata") or {}).items()},
    )


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), tz=UTC)
