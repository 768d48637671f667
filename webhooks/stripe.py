"""POST /stripe/webhook: Stripe's events, verified over the raw bytes and applied exactly once.

The signature is checked over the exact bytes received (300 s tolerance) before anything is parsed. For an event
about a subscription, its current state is fetched from Stripe first — outside any transaction, since a network call
must never hold one open — and then one transaction records the event id and applies it (core/billing/service.py).
Answers: 200 for applied, duplicate, ignored and unlinked events; 400 for a bad signature, a stale timestamp or a
body that isn't an event (nothing written, and Stripe won't retry a 400 forever: it's our secret or their bug);
503 when Stripe can't be read and 500 when applying failed — both roll everything back, so Stripe's retry applies
the event again.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import stripe
from aiohttp import web

from core import metrics
from core.billing.gateway import BillingGateway, BillingUnavailable
from core.billing.service import HANDLED, receive_event
from core.db.database import Database

log = logging.getLogger("tradedesk.webhooks.stripe")

TOLERANCE_S = 300
MAX_BODY = 1_000_000

BILLING = web.AppKey("billing", BillingGateway)
WEBHOOK_SECRET = web.AppKey("stripe_webhook_secret", str)
STRIPE_DATABASE = web.AppKey("stripe_database", Database)
CLOCK = web.AppKey("stripe_clock", Callable[[], datetime])


def _count(kind: object, outcome: str) -> None:
    # The type label is one of the handled types or "other": a sender can't grow the label set.
    metrics.WEBHOOK_EVENTS.labels(kind if kind in HANDLED else "other", outcome).inc()


def _refuse(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _event(raw: bytes) -> dict[str, Any] | None:
    try:
        event = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_"):
        return None
    data = event.get("data")
    if not isinstance(event.get("type"), str) or not isinstance(data, dict) or not isinstance(data.get("object"), dict):
        return None
    return event


async def stripe_webhook(request: web.Request) -> web.Response:
    raw = await request.read()
    if len(raw) > MAX_BODY:
        _count(None, "invalid")
        return _refuse(413, "event too large")
    header = request.headers.get("Stripe-Signature", "")
    try:
        stripe.WebhookSignature.verify_header(raw.decode("utf-8"), header, request.app[WEBHOOK_SECRET], TOLERANCE_S)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        log.warning("stripe: refused an event with a bad or stale signature (from %s)", request.remote)
        _count(None, "invalid")
        return _refuse(400, "invalid signature")
    event = _event(raw)
    if event is None:
        _count(None, "invalid")
        return _refuse(400, "not a Stripe event")
    try:
        outcome = await receive_event(request.app[STRIPE_DATABASE], request.app[BILLING], event, request.app[CLOCK])
    except BillingUnavailable as exc:
        log.warning("stripe: %s %s deferred: the subscription can't be read (%s)", event["type"], event["id"], exc)
        _count(event["type"], "unavailable")
        return _refuse(503, "billing provider unavailable; retry")
    except Exception:
        log.exception("stripe: applying %s %s failed; rolled back for Stripe's retry", event["type"], event["id"])
        _count(event["type"], "failed")
        return _refuse(500, "could not apply the event; retry")
    log.info("stripe: %s %s %s", event["type"], event["id"], outcome.status)
    _count(event["type"], outcome.status)
    return web.json_response({"status": outcome.status})


def add_stripe_routes(
    app: web.Application,
    *,
    database: Database,
    billing: BillingGateway,
    webhook_secret: str,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> None:
    app[STRIPE_DATABASE] = database
    app[BILLING] = billing
    app[WEBHOOK_SECRET] = webhook_secret
    app[CLOCK] = clock
    app.router.add_post("/stripe/webhook", stripe_webhook)
