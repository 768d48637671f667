"""A local fake of the parts of Stripe's REST API TradeDesk uses, for the real `stripe.StripeClient` to run against.

Nothing of stripe-python is mocked: the client form-encodes its parameters and sends them over HTTP to this server
exactly as it would to api.stripe.com, and every request is recorded with its decoded form body so a test can assert
what the code sent. Answers are shaped like Stripe's objects (`checkout.session`, `billing_portal.session`,
`customer`, `subscription`, `list` of `event`, `billing.meter_event`) and errors like Stripe's
`{"error": {"type", "code", "message", "param", ...}}` (absent fields omitted, as Stripe does).

    async with FakeStripe() as fake:
        fake.add_price("price_pro", unit_amount=2000)
        fake.add_price("price_metered", usage_type="metered")
        client = stripe.StripeClient(
            fake.api_key, base_addresses={"api": fake.base_url}, http_client=stripe.AIOHTTPClient(),
            max_network_retries=0,
        )
        session = await client.v1.checkout.sessions.create_async({...})
        assert fake.last("POST", "/v1/checkout/sessions").form["line_items[0][price]"] == "price_pro"

Endpoints: POST /v1/checkout/sessions, POST /v1/billing_portal/sessions, POST /v1/customers, GET
/v1/customers/{id}, GET /v1/subscriptions/{id}, GET /v1/events (limit, starting_after, ending_before,
delivery_success, created[gt|gte|lt|lte], type, types[]), POST /v1/billing/meter_events. What Stripe refuses the fake
refuses the same way: a wrong API key (401), an unknown price or customer (`resource_missing`), `customer` together
with `customer_email`, a quantity on a metered price or none on a licensed one, a meter event for an unknown meter,
a repeated meter-event identifier ("An event already exists with identifier ..."), a timestamp outside 35 days back
/ 5 minutes ahead, a reused `Idempotency-Key` with other parameters (`idempotency_error`). A POST repeated with the
same `Idempotency-Key` and parameters replays the first answer (`Idempotent-Replayed: true`), as Stripe does.
`fail_next(...)` injects 5xx/429 answers. `complete_checkout(session_id)` plays the customer paying: the
subscription, its first invoice and the events Stripe would send appear.

Webhook side: builders for real-shaped `event` objects (`checkout_session_completed`, `subscription_created`,
`subscription_updated`, `subscription_deleted`, `subscription_trial_will_end`, `invoice_paid`,
`invoice_payment_failed`) and `sign(payload, secret)` for the `Stripe-Signature` header, computed by stripe-python's
own `WebhookSignature.generate_signature_header`.
"""

from __future__ import annotations

import asyncio
import json
import random
import string
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl

import stripe
from aiohttp import web

from bench.serve import serve

JSON = dict[str, Any]

# The API version the fixtures were recorded with; events carry the version of the endpoint they were rendered for.
API_VERSION = "2026-07-29.dahlia"
METER_EVENT_PAST_S = 35 * 24 * 3600
METER_EVENT_FUTURE_S = 5 * 60
_ALPHANUM = string.ascii_letters + string.digits
_random = random.Random()  # ids, not secrets


def new_id(prefix: str, n: int = 24) -> str:
    """A Stripe-looking id: `new_id("sub")` -> "sub_1Pg...". Test-mode checkout sessions are "cs_test_..."."""
    return f"{prefix}_" + "".join(_random.choice(_ALPHANUM) for _ in range(n))


def _now() -> int:
    return int(time.time())


# ------------------------------------------------------------------------------------------------- form bodies


def unflatten(form: Mapping[str, str]) -> JSON:
    """Stripe's bracket form encoding back into nested values: `{"line_items[0][price]": "p"}` ->
    `{"line_items": [{"price": "p"}]}`. Objects whose keys are all indexes become lists (in index order)."""
    root: JSON = {}
    for key, value in form.items():
        head, _, rest = key.partition("[")
        parts = [head] + ([p.rstrip("]") for p in ("[" + rest).split("[")[1:]] if rest else [])
        node = root
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[parts[-1]] = value
    nested: JSON = _listify(root)
    return nested


def _listify(value: Any) -> Any:
    if isinstance(value, dict):
        items = {k: _listify(v) for k, v in value.items()}
        if items and all(k.isdigit() for k in items):
            return [items[k] for k in sorted(items, key=int)]
        return items
    return value


@dataclass
class RecordedRequest:
    """One request as the fake saw and answered it.

    `form` is the decoded `application/x-www-form-urlencoded` body with Stripe's bracket keys as sent
    (`"subscription_data[metadata][user_id]"`), `query` the decoded query string (same keys), `params` either of
    them unflattened into nested values; `headers` have lower-case names. `status` and `response` are what the fake
    answered; `replayed` is True when an idempotent replay answered it.
    """

    method: str
    path: str
    headers: dict[str, str]
    query: dict[str, str]
    form: dict[str, str]
    received_at: float
    status: int = 0
    response: Any = None
    replayed: bool = False

    @property
    def params(self) -> JSON:
        return unflatten(self.form if self.method == "POST" else self.query)

    @property
    def idempotency_key(self) -> str | None:
        return self.headers.get("idempotency-key")

    @property
    def stripe_version(self) -> str | None:
        return self.headers.get("stripe-version")


class StripeErrorAnswer(Exception):
    """Raised while handling a request to answer with Stripe's error body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def body(self, request_id: str) -> JSON:
        error: JSON = {"message": self.message, "type": self.type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = f"https://stripe.com/docs/error-codes/{self.code.replace('_', '-')}"
        if self.param is not None:
            error["param"] = self.param
        error["request_log_url"] = f"https://dashboard.stripe.com/test/logs/{request_id}"
        return {"error": error}


def _missing(kind: str, id: str, param: str) -> StripeErrorAnswer:
    return StripeErrorAnswer(404, f"No such {kind}: '{id}'", code="resource_missing", param=param)


def _required(param: str) -> StripeErrorAnswer:
    return StripeErrorAnswer(400, f"Missing required param: {param}.", code="parameter_missing", param=param)


def _integer(form: Mapping[str, str], param: str) -> int | None:
    raw = form.get(param)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise StripeErrorAnswer(400, f"Invalid integer: {raw}", code="parameter_invalid_integer", param=param) from None


@dataclass(frozen=True)
class _Failure:
    status: int
    message: str
    type: str
    code: str | None
    path: str | None
    headers: Mapping[str, str]


@dataclass
class _StoredEvent:
    event: JSON
    delivered: bool
    seq: int


@dataclass(frozen=True)
class CompletedCheckout:
    """What `FakeStripe.complete_checkout` made: the completed session, the subscription, its first invoice, and the
    events Stripe sends for them."""

    session: JSON
    subscription: JSON
    invoice: JSON
    events: list[JSON]


@dataclass
class _Idempotent:
    method: str
    path: str
    form: dict[str, str]
    status: int
    body: JSON


# --------------------------------------------------------------------------------------------- object builders


def price(
    id: str,
    *,
    usage_type: str = "licensed",
    unit_amount: int | None = 2000,
    currency: str = "usd",
    interval: str = "month",
    product: str | None = None,
    meter: str | None = None,
) -> JSON:
    """A recurring `price`; a metered one (`usage_type="metered"`) is billed through a meter (`meter`: mtr_...)."""
    return {
        "id": id,
        "object": "price",
        "active": True,
        "billing_scheme": "per_unit",
        "created": _now() - 86400,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": None,
        "metadata": {},
        "nickname": None,
        "product": product or new_id("prod", 14),
        "recurring": {
            "interval": interval,
            "interval_count": 1,
            "meter": (meter or new_id("mtr", 24)) if usage_type == "metered" else None,
            "usage_type": usage_type,
            "trial_period_days": None,
        },
        "tax_behavior": "unspecified",
        "tiers_mode": None,
        "transform_quantity": None,
        "type": "recurring",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
    }


def subscription_item(
    subscription_id: str,
    price_obj: JSON,
    *,
    current_period_start: int,
    current_period_end: int,
    quantity: int | None = 1,
    created: int | None = None,
) -> JSON:
    """A `subscription_item`: the billing period lives here (not on the subscription) in current API versions."""
    return {
        "id": new_id("si", 14),
        "object": "subscription_item",
        "billing_thresholds": None,
        "created": current_period_start if created is None else created,
        "current_period_end": current_period_end,
        "current_period_start": current_period_start,
        "discounts": [],
        "metadata": {},
        "price": price_obj,
        "quantity": quantity if price_obj["recurring"]["usage_type"] == "licensed" else None,
        "subscription": subscription_id,
        "tax_rates": [],
    }


def subscription(
    *,
    id: str | None = None,
    customer: str | None = None,
    status: str = "active",
    prices: Iterable[JSON | str] = ("price_pro",),
    created: int | None = None,
    current_period_end: int | None = None,
    period_ends: Mapping[str, int] | None = None,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    metadata: Mapping[str, str] | None = None,
    latest_invoice: str | None = None,
) -> JSON:
    """A `subscription` with one item per price (a price object, or an id for a licensed $20/month price).

    Every item's period runs from `created` (default: now) to `current_period_end` (default: 30 days later);
    `period_ends` overrides it per price id. `trial_end` makes `trial_start` = `created`.
    """
    sub_id = id or new_id("sub")
    start = _now() if created is None else created
    end = start + 30 * 86400 if current_period_end is None else current_period_end
    price_objs = [price(p) if isinstance(p, str) else p for p in prices]
    items = [
        subscription_item(
            sub_id,
            p,
            current_period_start=start,
            current_period_end=(period_ends or {}).get(p["id"], end),
        )
        for p in price_objs
    ]
    return {
        "id": sub_id,
        "object": "subscription",
        "application": None,
        "application_fee_percent": None,
        "automatic_tax": {"enabled": False, "liability": None, "disabled_reason": None},
        "billing_cycle_anchor": trial_end or start,
        "billing_cycle_anchor_config": None,
        "billing_mode": {"type": "classic", "flexible": None},
        "billing_thresholds": None,
        "cancel_at": end if cancel_at_period_end else None,
        "cancel_at_period_end": cancel_at_period_end,
        "canceled_at": canceled_at,
        "cancellation_details": {
            "comment": None,
            "feedback": None,
            "reason": "cancellation_requested" if canceled_at is not None else None,
        },
        "collection_method": "charge_automatically",
        "created": start,
        "currency": price_objs[0]["currency"] if price_objs else "usd",
        "customer": customer or new_id("cus", 14),
        "days_until_due": None,
        "default_payment_method": new_id("pm"),
        "default_source": None,
        "default_tax_rates": [],
        "description": None,
        "discounts": [],
        "ended_at": ended_at,
        "invoice_settings": {"account_tax_ids": None, "issuer": {"type": "self"}},
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "total_count": len(items),
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "latest_invoice": latest_invoice or new_id("in"),
        "livemode": False,
        "metadata": dict(metadata or {}),
        "next_pending_invoice_item_invoice": None,
        "on_behalf_of": None,
        "pause_collection": None,
        "payment_settings": {
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": "off",
        },
        "pending_invoice_item_interval": None,
        "pending_setup_intent": None,
        "pending_update": None,
        "schedule": None,
        "start_date": start,
        "status": status,
        "test_clock": None,
        "transfer_data": None,
        "trial_end": trial_end,
        "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
        "trial_start": start if trial_end is not None else None,
    }


def customer(*, id: str | None = None, email: str | None = None, name: str | None = None, metadata: Any = None) -> JSON:
    """A `customer`."""
    return {
        "id": id or new_id("cus", 14),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": _now(),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "discount": None,
        "email": email,
        "invoice_prefix": "".join(_random.choice(string.ascii_uppercase + string.digits) for _ in range(8)),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
        "livemode": False,
        "metadata": dict(metadata or {}),
        "name": name,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def checkout_session(
    *,
    id: str | None = None,
    mode: str = "subscription",
    customer: str | None = None,
    customer_email: str | None = None,
    client_reference_id: str | None = None,
    metadata: Mapping[str, str] | None = None,
    success_url: str | None = "https://example.com/billing/success",
    cancel_url: str | None = "https://example.com/billing/cancel",
    status: str = "open",
    subscription: str | None = None,
    invoice: str | None = None,
    amount_total: int = 2000,
    currency: str = "usd",
    created: int | None = None,
) -> JSON:
    """A hosted `checkout.session`: `status="open"` has a `url`; `"complete"` (as in checkout.session.completed) has
    `url: null`, a `subscription`, an `invoice` and `payment_status: "paid"`."""
    session_id = id or "cs_test_" + "".join(_random.choice(_ALPHANUM) for _ in range(58))
    created_at = _now() if created is None else created
    complete = status == "complete"
    return {
        "id": session_id,
        "object": "checkout.session",
        "adaptive_pricing": {"enabled": False},
        "after_expiration": None,
        "allow_promotion_codes": None,
        "amount_subtotal": amount_total,
        "amount_total": amount_total,
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "provider": None},
        "billing_address_collection": None,
        "cancel_url": cancel_url,
        "client_reference_id": client_reference_id,
        "client_secret": None,
        "consent": None,
        "consent_collection": None,
        "created": created_at,
        "currency": currency,
        "custom_fields": [],
        "custom_text": {"after_submit": None, "shipping_address": None, "submit": None},
        "customer": customer,
        "customer_creation": None,
        "customer_details": {"email": customer_email, "name": None, "phone": None, "tax_exempt": "none"}
        if complete
        else None,
        "customer_email": customer_email,
        "discounts": None,
        "expires_at": created_at + 24 * 3600,
        "invoice": invoice if complete else None,
        "invoice_creation": None,
        "livemode": False,
        "locale": None,
        "metadata": dict(metadata or {}),
        "mode": mode,
        "payment_intent": None,
        "payment_link": None,
        "payment_method_collection": "always",
        "payment_method_options": {"card": {"request_three_d_secure": "automatic"}},
        "payment_method_types": ["card"],
        "payment_status": "paid" if complete else "unpaid",
        "phone_number_collection": {"enabled": False},
        "recovered_from": None,
        "setup_intent": None,
        "shipping_address_collection": None,
        "shipping_cost": None,
        "shipping_options": [],
        "status": status,
        "submit_type": None,
        "subscription": subscription if complete else None,
        "success_url": success_url,
        "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        "ui_mode": "hosted",
        "url": None if complete else f"https://checkout.stripe.com/c/pay/{session_id}#fidkdWxOYHwnPyd1blpxYHZxWjA0",
    }


def invoice(
    sub: JSON,
    *,
    id: str | None = None,
    status: str = "paid",
    billing_reason: str = "subscription_create",
    amount: int | None = None,
    attempt_count: int | None = None,
    next_payment_attempt: int | None = None,
    created: int | None = None,
) -> JSON:
    """An `invoice` for a subscription's current period: `status="paid"` (invoice.paid) or `"open"` with an
    attempt made (invoice.payment_failed). The subscription is referenced under `parent.subscription_details`."""
    invoice_id = id or new_id("in")
    created_at = _now() if created is None else created
    items = sub["items"]["data"]
    total = (
        sum(int(i["price"]["unit_amount"] or 0) * int(i["quantity"] or 0) for i in items) if amount is None else amount
    )
    paid = status == "paid"
    period_start = min((int(i["current_period_start"]) for i in items), default=created_at)
    period_end = max((int(i["current_period_end"]) for i in items), default=created_at)
    lines = [
        {
            "id": new_id("il"),
            "object": "line_item",
            "amount": int(i["price"]["unit_amount"] or 0) * int(i["quantity"] or 0),
            "currency": sub["currency"],
            "description": None,
            "discount_amounts": [],
            "discountable": True,
            "discounts": [],
            "invoice": invoice_id,
            "livemode": False,
            "metadata": {},
            "parent": {
                "invoice_item_details": None,
                "subscription_item_details": {
                    "invoice_item": None,
                    "proration": False,
                    "proration_details": {"credited_items": None},
                    "subscription": sub["id"],
                    "subscription_item": i["id"],
                },
                "type": "subscription_item_details",
            },
            "period": {"start": i["current_period_start"], "end": i["current_period_end"]},
            "pretax_credit_amounts": [],
            "pricing": {
                "price_details": {"price": i["price"]["id"], "product": i["price"]["product"]},
                "type": "price_details",
                "unit_amount_decimal": i["price"]["unit_amount_decimal"],
            },
            "quantity": i["quantity"],
            "subtotal": int(i["price"]["unit_amount"] or 0) * int(i["quantity"] or 0),
            "taxes": [],
        }
        for i in items
    ]
    return {
        "id": invoice_id,
        "object": "invoice",
        "account_country": "US",
        "account_name": None,
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": total if paid else 0,
        "amount_remaining": 0 if paid else total,
        "amount_shipping": 0,
        "attempt_count": (0 if paid else 1) if attempt_count is None else attempt_count,
        "attempted": True,
        "auto_advance": not paid,
        "automatic_tax": {"enabled": False, "liability": None, "status": None, "disabled_reason": None},
        "billing_reason": billing_reason,
        "collection_method": "charge_automatically",
        "created": created_at,
        "currency": sub["currency"],
        "customer": sub["customer"],
        "customer_email": None,
        "customer_name": None,
        "default_payment_method": None,
        "description": None,
        "discounts": [],
        "due_date": None,
        "effective_at": created_at,
        "ending_balance": 0,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/acct_fake/test_{invoice_id}",
        "invoice_pdf": f"https://pay.stripe.com/invoice/acct_fake/test_{invoice_id}/pdf",
        "issuer": {"type": "self"},
        "last_finalization_error": None,
        "lines": {
            "object": "list",
            "data": lines,
            "has_more": False,
            "total_count": len(lines),
            "url": f"/v1/invoices/{invoice_id}/lines",
        },
        "livemode": False,
        "metadata": {},
        "next_payment_attempt": next_payment_attempt if not paid else None,
        "number": None,
        "parent": {
            "quote_details": None,
            "subscription_details": {"metadata": dict(sub["metadata"]), "subscription": sub["id"]},
            "type": "subscription_details",
        },
        "period_end": period_end if billing_reason != "subscription_create" else period_start,
        "period_start": period_start,
        "status": status,
        "status_transitions": {
            "finalized_at": created_at,
            "marked_uncollectible_at": None,
            "paid_at": created_at + 2 if paid else None,
            "voided_at": None,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }


# ---------------------------------------------------------------------------------------------- event builders


def event(
    type: str,
    obj: Mapping[str, Any],
    *,
    id: str | None = None,
    created: int | None = None,
    previous_attributes: Mapping[str, Any] | None = None,
    api_version: str = API_VERSION,
    pending_webhooks: int = 1,
    request_id: str | None = None,
    idempotency_key: str | None = None,
) -> JSON:
    """An `event` as Stripe delivers it to a webhook endpoint (a snapshot event: `data.object` is the object as it
    was when the event happened; `data.previous_attributes` only on `*.updated`). `request` names the API request
    that caused it (null id for changes Stripe made itself, like a renewal)."""
    data: JSON = {"object": dict(obj)}
    if previous_attributes is not None:
        data["previous_attributes"] = dict(previous_attributes)
    return {
        "id": id or new_id("evt"),
        "object": "event",
        "api_version": api_version,
        "created": _now() if created is None else created,
        "data": data,
        "livemode": False,
        "pending_webhooks": pending_webhooks,
        "request": {"id": request_id, "idempotency_key": idempotency_key},
        "type": type,
    }


def checkout_session_completed(session: Mapping[str, Any], **kw: Any) -> JSON:
    """`checkout.session.completed` for a completed session (see `checkout_session(status="complete", ...)`)."""
    return event("checkout.session.completed", session, **kw)


def subscription_created(sub: Mapping[str, Any], **kw: Any) -> JSON:
    return event("customer.subscription.created", sub, **kw)


def subscription_updated(sub: Mapping[str, Any], previous_attributes: Mapping[str, Any], **kw: Any) -> JSON:
    """`customer.subscription.updated`; `previous_attributes` holds the changed fields' old values."""
    return event("customer.subscription.updated", sub, previous_attributes=previous_attributes, **kw)


def subscription_deleted(sub: Mapping[str, Any], **kw: Any) -> JSON:
    """`customer.subscription.deleted`: pass the subscription as it ended (status canceled, ended_at set)."""
    return event("customer.subscription.deleted", sub, **kw)


def subscription_trial_will_end(sub: Mapping[str, Any], **kw: Any) -> JSON:
    """`customer.subscription.trial_will_end` (three days before `trial_end`)."""
    return event("customer.subscription.trial_will_end", sub, **kw)


def invoice_paid(inv: Mapping[str, Any], **kw: Any) -> JSON:
    return event("invoice.paid", inv, **kw)


def invoice_payment_failed(inv: Mapping[str, Any], **kw: Any) -> JSON:
    return event("invoice.payment_failed", inv, **kw)


def sign(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """The `Stripe-Signature` header for `payload` (the exact bytes POSTed): "t=<ts>,v1=<hex HMAC-SHA256 of
    '<ts>.<payload>' keyed by the endpoint secret>", computed by stripe-python's own helper. `timestamp` defaults to
    now; an old one makes a stale signature (`construct_event` refuses beyond its 300 s tolerance)."""
    header: str = stripe.WebhookSignature.generate_signature_header(payload.decode("utf-8"), secret, timestamp)
    return header


def signed(event_obj: Mapping[str, Any], secret: str, timestamp: int | None = None) -> tuple[bytes, dict[str, str]]:
    """An event serialised as Stripe sends it (pretty-printed JSON) and the headers of the webhook POST."""
    payload = (json.dumps(event_obj, indent=2) + "\n").encode("utf-8")
    return payload, {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": sign(payload, secret, timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }


# ------------------------------------------------------------------------------------------------------ server


class FakeStripe:
    """A local Stripe REST API for the real stripe-python client; an async context manager.

    Configuration (constructor arguments, also attributes a test may change while running):
      api_key     the secret key clients must present (`Authorization: Bearer <key>`); anything else is a 401
      latency_s   artificial delay before every answer

    State a test registers or reads: `prices`, `customers`, `subscriptions` (by id), `meters` (event names),
    `checkout_sessions`, `portal_sessions`, `meter_events` (accepted, in order), `requests` (everything, refused or
    not). Register with `add_price`, `add_customer`, `add_subscription`, `add_meter`, `add_event`.
    """

    def __init__(self, *, api_key: str = "sk_test_fake_stripe", latency_s: float = 0.0) -> None:
        self.api_key = api_key
        self.latency_s = latency_s
        self.requests: list[RecordedRequest] = []
        self.prices: dict[str, JSON] = {}
        self.customers: dict[str, JSON] = {}
        self.subscriptions: dict[str, JSON] = {}
        self.meters: set[str] = set()
        self.checkout_sessions: dict[str, JSON] = {}
        self.portal_sessions: list[JSON] = []
        self.meter_events: list[JSON] = []
        self._events: list[_StoredEvent] = []
        self._failures: list[_Failure] = []
        self._idempotency: dict[str, _Idempotent] = {}
        self._checkout_params: dict[str, JSON] = {}
        self._runner: web.AppRunner | None = None
        self.port = 0

    # ------------------------------------------------------------------------------------------- lifecycle

    async def __aenter__(self) -> FakeStripe:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Listen on a free port on 127.0.0.1."""
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        served = await serve(app, shutdown_timeout=1.0)
        self._runner, self.port = served.runner, served.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base_url(self) -> str:
        """What to pass as `StripeClient(..., base_addresses={"api": fake.base_url})`: the client appends /v1/..."""
        return f"http://127.0.0.1:{self.port}"

    # ------------------------------------------------------------------------------------------ registering

    def add_price(self, id: str, **kw: Any) -> JSON:
        """Register a price (see `price(...)`): checkout refuses unknown prices, as Stripe does."""
        self.prices[id] = price(id, **kw)
        return self.prices[id]

    def add_customer(self, *, id: str | None = None, email: str | None = None, name: str | None = None) -> JSON:
        obj = customer(id=id, email=email, name=name)
        self.customers[obj["id"]] = obj
        return obj

    def add_subscription(self, sub: JSON | None = None, /, **kw: Any) -> JSON:
        """Register a subscription (`subscription(...)`'s result, or its keyword arguments); prices that are ids of
        registered prices use those. GET /v1/subscriptions/{id} answers it (and later changes to the dict)."""
        if sub is None:
            kw["prices"] = [
                self.prices.get(p, p) if isinstance(p, str) else p for p in kw.get("prices", ("price_pro",))
            ]
            sub = subscription(**kw)
        self.subscriptions[sub["id"]] = sub
        return sub

    def add_meter(self, event_name: str) -> None:
        """An active meter: meter events for other event names are refused."""
        self.meters.add(event_name)

    def add_event(self, event_obj: JSON, *, delivered: bool = True) -> JSON:
        """Make an event listable by GET /v1/events; `delivered=False` marks it as not (yet) delivered to every
        webhook endpoint, what `delivery_success=false` lists."""
        self._events.append(_StoredEvent(event_obj, delivered, len(self._events)))
        return event_obj

    def fail_next(
        self,
        status: int = 500,
        *,
        count: int = 1,
        path: str | None = None,
        message: str | None = None,
        type: str | None = None,
        code: str | None = None,
        should_retry: bool | None = None,
    ) -> None:
        """Answer the next `count` requests (to `path`, or any) with an error: 500 `api_error` by default, 429
        `rate_limit`; `should_retry` sets the `Stripe-Should-Retry` header stripe-python obeys."""
        headers = {} if should_retry is None else {"Stripe-Should-Retry": "true" if should_retry else "false"}
        if status == 429:
            default_type, default_code = "invalid_request_error", "rate_limit"
            default_message = (
                "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits."
            )
        else:
            default_type, default_code, default_message = "api_error", None, "An unknown error occurred"
        for _ in range(count):
            self._failures.append(
                _Failure(
                    status,
                    default_message if message is None else message,
                    default_type if type is None else type,
                    default_code if code is None else code,
                    path,
                    headers,
                )
            )

    # -------------------------------------------------------------------------------------------- reading

    def complete_checkout(self, session_id: str, *, email: str = "trader@example.com") -> CompletedCheckout:
        """What Stripe does when the customer pays for a subscription-mode session: it creates the customer (unless
        the session named one), the subscription (an item per line item, `subscription_data[metadata]` as its
        metadata, `trialing` for `subscription_data[trial_period_days]`) and its first invoice, paid; the session
        becomes `complete`. Returns them with the events Stripe sends (customer.subscription.created, invoice.paid,
        checkout.session.completed: Stripe doesn't promise an order), which are also listable as delivered."""
        if session_id not in self.checkout_sessions:
            raise KeyError(f"FakeStripe: no checkout session {session_id}")
        params = self._checkout_params[session_id]
        open_session = self.checkout_sessions[session_id]
        if open_session["status"] != "open" or open_session["mode"] != "subscription":
            raise ValueError(f"FakeStripe: session {session_id} is {open_session['status']}/{open_session['mode']}")
        customer_id = open_session["customer"]
        if customer_id is None:
            customer_id = self.add_customer(email=open_session["customer_email"] or email)["id"]
        data = params.get("subscription_data") or {}
        trial_days = int(data["trial_period_days"]) if data.get("trial_period_days") else None
        now = _now()
        trial_end = now + trial_days * 86400 if trial_days else None
        sub = self.add_subscription(
            subscription(
                customer=customer_id,
                status="trialing" if trial_end else "active",
                prices=[self.prices[item["price"]] for item in params.get("line_items") or []],
                created=now,
                current_period_end=trial_end,
                trial_end=trial_end,
                metadata=data.get("metadata") or {},
            )
        )
        inv = invoice(sub, amount=0 if trial_end else None, created=now)
        sub["latest_invoice"] = inv["id"]
        session = checkout_session(
            id=session_id,
            customer=customer_id,
            customer_email=open_session["customer_email"],
            client_reference_id=open_session["client_reference_id"],
            metadata=open_session["metadata"],
            success_url=open_session["success_url"],
            cancel_url=open_session["cancel_url"],
            status="complete",
            subscription=sub["id"],
            invoice=inv["id"],
            amount_total=inv["total"],
            created=open_session["created"],
        )
        session["customer_details"]["email"] = open_session["customer_email"] or email
        self.checkout_sessions[session_id] = session
        events = [
            subscription_created(sub, created=now),
            invoice_paid(inv, created=now),
            checkout_session_completed(session, created=now),
        ]
        for evt in events:
            self.add_event(evt)
        return CompletedCheckout(session, sub, inv, events)

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == method and r.path == path]

    def last(self, method: str, path: str) -> RecordedRequest:
        found = self.requests_to(method, path)
        if not found:
            seen = ", ".join(f"{r.method} {r.path}" for r in self.requests) or "none"
            raise AssertionError(f"FakeStripe: no {method} {path} request (requests seen: {seen})")
        return found[-1]

    # --------------------------------------------------------------------------------------------- serving

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        recorded = RecordedRequest(
            method=request.method,
            path=request.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=dict(parse_qsl(request.query_string, keep_blank_values=True)),
            form=dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True)) if raw else {},
            received_at=time.monotonic(),
        )
        self.requests.append(recorded)
        request_id = new_id("req", 14)
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": recorded.stripe_version or API_VERSION,
            "Access-Control-Allow-Origin": "*",
        }
        if self.latency_s > 0:
            await asyncio.sleep(self.latency_s)
        try:
            self._check_auth(recorded)
            failure = self._take_failure(recorded.path)
            if failure is not None:
                headers.update(failure.headers)
                raise StripeErrorAnswer(failure.status, failure.message, type=failure.type, code=failure.code)
            status, body, replayed = self._idempotent(recorded)
            recorded.replayed = replayed
            if replayed:
                headers["Idempotent-Replayed"] = "true"
        except StripeErrorAnswer as answer:
            status, body = answer.status, answer.body(request_id)
            headers.update(answer.headers)
        if recorded.idempotency_key:
            headers["Idempotency-Key"] = recorded.idempotency_key
        recorded.status, recorded.response = status, body
        return web.json_response(body, status=status, headers=headers)

    def _check_auth(self, recorded: RecordedRequest) -> None:
        given = recorded.headers.get("authorization", "")
        if given == f"Bearer {self.api_key}":
            return
        if not given:
            raise StripeErrorAnswer(
                401,
                "You did not provide an API key. You need to provide your API key in the Authorization header, "
                "using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY').",
            )
        key = given.removeprefix("Bearer ")
        raise StripeErrorAnswer(
            401, f"Invalid API Key provided: {key[:8]}{'*' * max(0, len(key) - 12)}{key[-4:]}", code="api_key_invalid"
        )

    def _take_failure(self, path: str) -> _Failure | None:
        for i, failure in enumerate(self._failures):
            if failure.path is None or failure.path == path:
                return self._failures.pop(i)
        return None

    def _idempotent(self, recorded: RecordedRequest) -> tuple[int, JSON, bool]:
        key = recorded.idempotency_key if recorded.method == "POST" else None
        if key is not None and key in self._idempotency:
            seen = self._idempotency[key]
            if (seen.method, seen.path, seen.form) != (recorded.method, recorded.path, recorded.form):
                raise StripeErrorAnswer(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters they were first used "
                    f"with. Try using a key other than '{key}' if you meant to execute a different request.",
                    type="idempotency_error",
                )
            return seen.status, seen.body, True
        try:
            status, body = 200, self._route(recorded)
        except StripeErrorAnswer as answer:
            if key is not None and answer.status < 500:  # Stripe saves the outcome of a request that ran
                self._idempotency[key] = _Idempotent(
                    recorded.method, recorded.path, recorded.form, answer.status, answer.body(new_id("req", 14))
                )
            raise
        if key is not None:
            self._idempotency[key] = _Idempotent(recorded.method, recorded.path, recorded.form, status, body)
        return status, body, False

    def _route(self, r: RecordedRequest) -> JSON:
        parts = r.path.strip("/").split("/")
        match (r.method, parts):
            case ("POST", ["v1", "checkout", "sessions"]):
                return self._create_checkout_session(r.form)
            case ("POST", ["v1", "billing_portal", "sessions"]):
                return self._create_portal_session(r.form)
            case ("POST", ["v1", "customers"]):
                obj = customer(email=r.form.get("email"), name=r.form.get("name"), metadata=r.params.get("metadata"))
                self.customers[obj["id"]] = obj
                return obj
            case ("GET", ["v1", "customers", customer_id]):
                if customer_id not in self.customers:
                    raise _missing("customer", customer_id, "id")
                return self.customers[customer_id]
            case ("GET", ["v1", "subscriptions", subscription_id]):
                if subscription_id not in self.subscriptions:
                    raise _missing("subscription", subscription_id, "id")
                return self.subscriptions[subscription_id]
            case ("GET", ["v1", "events"]):
                return self._list_events(r.query)
            case ("POST", ["v1", "billing", "meter_events"]):
                return self._create_meter_event(r.form)
        raise StripeErrorAnswer(
            404,
            f"Unrecognized request URL ({r.method}: {r.path}). Please see https://stripe.com/docs or we can help at "
            "https://support.stripe.com/.",
        )

    # ------------------------------------------------------------------------------------------- endpoints

    def _create_checkout_session(self, form: dict[str, str]) -> JSON:
        params = unflatten(form)
        mode = form.get("mode")
        if not mode:
            raise _required("mode")
        if mode not in ("payment", "setup", "subscription"):
            raise StripeErrorAnswer(
                400,
                "Invalid mode: must be one of payment, setup, or subscription",
                code="parameter_invalid_string",
                param="mode",
            )
        if form.get("customer") and form.get("customer_email"):
            raise StripeErrorAnswer(
                400,
                "You may only specify one of these parameters: customer, customer_email.",
                code="parameter_unknown",
                param="customer_email",
            )
        customer_id = form.get("customer")
        if customer_id and customer_id not in self.customers:
            raise _missing("customer", customer_id, "customer")
        line_items = params.get("line_items") or []
        if mode != "setup" and not line_items:
            raise StripeErrorAnswer(
                400,
                "You must provide at least one recurring price in `subscription` mode when using prices."
                if mode == "subscription"
                else "Missing required param: line_items.",
                code="parameter_missing",
                param="line_items",
            )
        total = 0
        for i, item in enumerate(line_items):
            price_id = item.get("price") if isinstance(item, dict) else None
            if not price_id:
                raise _required(f"line_items[{i}][price]")
            if price_id not in self.prices:
                raise _missing("price", price_id, f"line_items[{i}][price]")
            usage_type = self.prices[price_id]["recurring"]["usage_type"]
            quantity = _integer(form, f"line_items[{i}][quantity]")
            if usage_type == "metered" and quantity is not None:
                raise StripeErrorAnswer(
                    400,
                    f"Quantity should not be specified where usage_type is `metered`. Remove quantity from "
                    f"`line_items[{i}]`.",
                    code="parameter_invalid_integer",
                    param=f"line_items[{i}][quantity]",
                )
            if usage_type == "licensed" and quantity is None:
                raise StripeErrorAnswer(
                    400,
                    f"Quantity is required. Add `quantity` to `line_items[{i}]`",
                    code="parameter_missing",
                    param=f"line_items[{i}][quantity]",
                )
            if quantity is not None:
                total += int(self.prices[price_id]["unit_amount"] or 0) * quantity
        trial = _integer(form, "subscription_data[trial_period_days]")
        if trial is not None and not 1 <= trial <= 730:
            raise StripeErrorAnswer(
                400,
                "The trial_period_days must be between 1 and 730.",
                code="parameter_invalid_integer",
                param="subscription_data[trial_period_days]",
            )
        if "subscription_data" in params and mode != "subscription":
            raise StripeErrorAnswer(
                400,
                "You can only pass in subscription_data in `subscription` mode.",
                code="parameter_unknown",
                param="subscription_data",
            )
        session = checkout_session(
            mode=mode,
            customer=customer_id,
            customer_email=form.get("customer_email"),
            client_reference_id=form.get("client_reference_id"),
            metadata=params.get("metadata") or {},
            success_url=form.get("success_url"),
            cancel_url=form.get("cancel_url"),
            amount_total=0 if trial else total,
        )
        self.checkout_sessions[session["id"]] = session
        self._checkout_params[session["id"]] = params
        return session

    def _create_portal_session(self, form: dict[str, str]) -> JSON:
        customer_id = form.get("customer")
        if not customer_id:
            raise _required("customer")
        if customer_id not in self.customers:
            raise _missing("customer", customer_id, "customer")
        session = {
            "id": new_id("bps"),
            "object": "billing_portal.session",
            "configuration": "bpc_" + "fakeconfiguration000000",
            "created": _now(),
            "customer": customer_id,
            "flow": None,
            "livemode": False,
            "locale": form.get("locale"),
            "on_behalf_of": None,
            "return_url": form.get("return_url"),
            "url": f"https://billing.stripe.com/p/session/test_{new_id('YWNjdF8', 40)}",
        }
        self.portal_sessions.append(session)
        return session

    def _list_events(self, query: dict[str, str]) -> JSON:
        limit = _integer(query, "limit")
        limit = 10 if limit is None else limit
        if not 1 <= limit <= 100:
            raise StripeErrorAnswer(
                400,
                "This value must be less than or equal to 100."
                if limit > 100
                else "This value must be greater than 0.",
                code="parameter_invalid_integer",
                param="limit",
            )
        # Newest first, as Stripe lists.
        stored = sorted(self._events, key=lambda s: (s.event["created"], s.seq), reverse=True)
        delivery = query.get("delivery_success")
        if delivery is not None:
            if delivery not in ("true", "false"):
                raise StripeErrorAnswer(
                    400, f"Invalid boolean: {delivery}", code="parameter_invalid_boolean", param="delivery_success"
                )
            stored = [s for s in stored if s.delivered == (delivery == "true")]
        created_exact = _integer(query, "created")
        bounds = {op: _integer(query, f"created[{op}]") for op in ("gt", "gte", "lt", "lte")}

        def created_ok(ts: int) -> bool:
            return (
                (created_exact is None or ts == created_exact)
                and (bounds["gt"] is None or ts > bounds["gt"])
                and (bounds["gte"] is None or ts >= bounds["gte"])
                and (bounds["lt"] is None or ts < bounds["lt"])
                and (bounds["lte"] is None or ts <= bounds["lte"])
            )

        types = [v for k, v in query.items() if k.startswith("types[")]
        if query.get("type"):
            wanted = query["type"]
            types.append(wanted)

        def type_ok(t: str) -> bool:
            return not types or any(t == w or (w.endswith("*") and t.startswith(w[:-1])) for w in types)

        def position(s: _StoredEvent) -> tuple[int, int]:
            return (int(s.event["created"]), s.seq)

        matching = [s for s in stored if created_ok(int(s.event["created"])) and type_ok(str(s.event["type"]))]
        by_id = {s.event["id"]: s for s in self._events}
        after, before = query.get("starting_after"), query.get("ending_before")
        # A cursor is a place in the newest-first order, whether or not the cursor event itself matches the filters.
        if after is not None:
            if after not in by_id:
                raise _missing("event", after, "starting_after")
            older = [s for s in matching if position(s) < position(by_id[after])]
            chosen, has_more = older[:limit], len(older) > limit
        elif before is not None:
            if before not in by_id:
                raise _missing("event", before, "ending_before")
            newer = [s for s in matching if position(s) > position(by_id[before])]
            chosen, has_more = newer[-limit:], len(newer) > limit
        else:
            chosen, has_more = matching[:limit], len(matching) > limit
        return {"object": "list", "data": [s.event for s in chosen], "has_more": has_more, "url": "/v1/events"}

    def _create_meter_event(self, form: dict[str, str]) -> JSON:
        params = unflatten(form)
        event_name = form.get("event_name")
        if not event_name:
            raise _required("event_name")
        payload = params.get("payload")
        if not isinstance(payload, dict) or not payload:
            raise _required("payload")
        if event_name not in self.meters:
            raise StripeErrorAnswer(
                400,
                f"No active meter found with event_name `{event_name}`.",
                code="resource_missing",
                param="event_name",
            )
        if "stripe_customer_id" not in payload:
            raise StripeErrorAnswer(
                400,
                "Missing required key `stripe_customer_id` in payload.",
                code="parameter_missing",
                param="payload[stripe_customer_id]",
            )
        value = payload.get("value")
        if value is None:
            raise StripeErrorAnswer(
                400, "Missing required key `value` in payload.", code="parameter_missing", param="payload[value]"
            )
        try:
            float(value)
        except ValueError:
            raise StripeErrorAnswer(
                400, f"Invalid value `{value}`: must be a number.", code="parameter_invalid", param="payload[value]"
            ) from None
        now = _now()
        timestamp = _integer(form, "timestamp")
        timestamp = now if timestamp is None else timestamp
        if not now - METER_EVENT_PAST_S <= timestamp <= now + METER_EVENT_FUTURE_S:
            raise StripeErrorAnswer(
                400,
                "Timestamp must be within the past 35 calendar days or up to 5 minutes in the future.",
                code="parameter_invalid_integer",
                param="timestamp",
            )
        identifier = form.get("identifier") or new_id("mev", 20)
        if len(identifier) > 100:
            raise StripeErrorAnswer(
                400, "Identifier must be at most 100 characters.", code="parameter_invalid_string", param="identifier"
            )
        if any(e["identifier"] == identifier for e in self.meter_events):
            # What Stripe answers a repeated identifier under a new Idempotency-Key (uniqueness holds >= 24 hours).
            raise StripeErrorAnswer(400, f"An event already exists with identifier {identifier}.")
        obj = {
            "object": "billing.meter_event",
            "created": now,
            "event_name": event_name,
            "identifier": identifier,
            "livemode": False,
            "payload": payload,
            "timestamp": timestamp,
        }
        self.meter_events.append(obj)
        return obj


__all__ = [
    "API_VERSION",
    "CompletedCheckout",
    "FakeStripe",
    "RecordedRequest",
    "StripeErrorAnswer",
    "checkout_session",
    "checkout_session_completed",
    "customer",
    "event",
    "invoice",
    "invoice_paid",
    "invoice_payment_failed",
    "new_id",
    "price",
    "sign",
    "signed",
    "subscription",
    "subscription_created",
    "subscription_deleted",
    "subscription_item",
    "subscription_trial_will_end",
    "subscription_updated",
    "unflatten",
]
