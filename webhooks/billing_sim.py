"""The offline billing simulator: TradeDesk's local default when STRIPE_SECRET_KEY is unset.

It plays Stripe's part and nothing else: `BillingSimulator` implements the same BillingGateway as the Stripe gateway
(Checkout and Portal links, subscription reads, undelivered events, usage reports), and its pages on the web app
(a checkout page and a portal page, clearly marked as simulated) turn a click into the events Stripe would send,
signed with the webhook secret and POSTed over HTTP to the real /stripe/webhook. So upgrading offline runs the very
code path it runs with Stripe: signature, event recording, subscription re-fetch, entitlements, DMs.

Its state (customers, subscriptions, events it could not deliver, usage reports) lives in app_state, so any
process of the deployment answers the same subscription reads. Checkout and portal sessions are signed tokens in the
URL: no state until the user completes them. The simulator does not exist when Stripe is configured.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import aiohttp
import stripe
from aiohttp import web

from core.billing.gateway import BillingUnavailable, CheckoutLink, CheckoutRequest, SubscriptionState
from core.db.database import Database, raw_connection
from core.db.state import get_state

log = logging.getLogger("tradedesk.billing.simulator")
T = TypeVar("T")

STATE_KEY = "billing.simulator"
SESSION_TTL = timedelta(hours=1)
PERIOD = timedelta(days=30)
KEEP = timedelta(days=40)  # undelivered events and usage reports older than this are pruned
API_VERSION = "2026-07-29.dahlia"


def _id(prefix: str) -> str:
    return f"{prefix}_sim{secrets.token_hex(10)}"


class BillingSimulator:
    mode = "simulator"
    meters = True  # it keeps the usage reports it gets, as a meter would

    def __init__(self, database: Database, *, public_url: str, webhook_url: str, webhook_secret: str, price_pro: str):
        self.database = database
        self.public_url = public_url.rstrip("/")
        self.webhook_url = webhook_url
        self.webhook_secret = webhook_secret
        self.price_pro = price_pro
        self._key = hashlib.sha256(("tradedesk-billing-sim:" + webhook_secret).encode()).digest()

    # -- signed session tokens (the checkout and portal URLs) -------------------------------------------------------

    def _token(self, data: dict[str, Any]) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        mac = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
        return f"{body}.{mac}"

    def read_token(self, token: str) -> dict[str, Any] | None:
        body, _, mac = token.partition(".")
        good = hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()[:32]
        if not hmac.compare_digest(mac, good):
            return None
        try:
            data: dict[str, Any] = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except ValueError:
            return None
        return data if data.get("exp", 0) > time.time() else None

    # -- state ------------------------------------------------------------------------------------------------------

    async def _load(self) -> dict[str, Any]:
        async with self.database.system_scope("billing.simulator") as s:
            state = await get_state(s, STATE_KEY)
        return state or _empty()

    async def _update(self, change: Callable[[dict[str, Any]], T]) -> T:
        """Change the state under its row lock: two checkouts (or a checkout and the metering job) can't lose each
        other's writes. Old undelivered events and usage reports are pruned on the way."""
        async with self.database.system_scope("billing.simulator") as s:
            conn = await raw_connection(s)
            await conn.execute(
                "INSERT INTO app_state (key, value) VALUES ($1, $2::jsonb) ON CONFLICT (key) DO NOTHING",
                STATE_KEY,
                json.dumps(_empty()),
            )
            raw = await conn.fetchval("SELECT value FROM app_state WHERE key = $1 FOR UPDATE", STATE_KEY)
            state: dict[str, Any] = _empty() | (json.loads(raw) if isinstance(raw, str) else raw)
            result = change(state)
            oldest = time.time() - KEEP.total_seconds()
            state["undelivered"] = [e for e in state["undelivered"] if e["created"] >= oldest]
            state["usage"] = {k: v for k, v in state["usage"].items() if v.get("ts", oldest) >= oldest}
            await conn.execute(
                "UPDATE app_state SET value = $2::jsonb, updated_at = now() WHERE key = $1",
                STATE_KEY,
                json.dumps(state),
            )
        return result

    # -- BillingGateway ---------------------------------------------------------------------------------------------

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        session_id = _id("cs")
        token = self._token(
            {
                "kind": "checkout",
                "session": session_id,
                "user": str(request.user_id),
                "customer": request.customer_id,
                "trial_days": request.trial_days,
                "success": request.success_url,
                "cancel": request.cancel_url,
                "exp": int(time.time() + SESSION_TTL.total_seconds()),
            }
        )
        return CheckoutLink(session_id, f"{self.public_url}/billing/simulator/checkout/{token}")

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        token = self._token(
            {"kind": "portal", "customer": customer_id, "return": return_url, "exp": int(time.time() + 3600)}
        )
        return f"{self.public_url}/billing/simulator/portal/{token}"

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None:
        sub = (await self._load())["subscriptions"].get(subscription_id)
        return _state(sub) if sub else None

    async def undelivered_events(self, since: datetime) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = (await self._load())["undelivered"]
        return [e for e in events if e["created"] >= since.timestamp()]

    async def report_usage(self, *, customer_id: str, identifier: str, value: int, at: datetime) -> None:
        entry = {"customer": customer_id, "value": value, "at": at.isoformat(), "ts": at.timestamp()}
        await self._update(lambda state: state["usage"].setdefault(identifier, entry))  # one per identifier

    async def close(self) -> None:
        """Nothing to release: each delivery opens and closes its own HTTP session."""

    # -- what the pages do ------------------------------------------------------------------------------------------

    async def complete_checkout(self, session: dict[str, Any]) -> str:
        """The user paid (in simulation): create the customer and subscription, deliver Stripe's events. A session
        completes once, as on Stripe: paying again (a double submit, a second tab) changes nothing."""
        now = int(time.time())
        trial_days = session.get("trial_days")

        def complete(state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
            done = state["completed"].get(session["session"])
            if done is not None:
                return state["subscriptions"][done], False
            customer = session.get("customer") or _id("cus")
            state["customers"][customer] = {"user": session["user"]}
            sub = {
                "id": _id("sub"),
                "customer": customer,
                "status": "trialing" if trial_days else "active",
                "price": self.price_pro,
                "current_period_end": now + int(PERIOD.total_seconds()),
                "trial_end": now + int(trial_days) * 86_400 if trial_days else None,
                "cancel_at_period_end": False,
                "canceled_at": None,
                "ended_at": None,
                "created": now,
                "metadata": {"user_id": session["user"]},
            }
            state["subscriptions"][sub["id"]] = sub
            state["completed"][session["session"]] = sub["id"]
            return sub, True

        subscription, new = await self._update(complete)
        if not new:
            return str(subscription["id"])
        checkout = {
            "id": session["session"], "object": "checkout.session", "mode": "subscription", "status": "complete",
            "customer": subscription["customer"], "subscription": subscription["id"],
            "client_reference_id": session["user"], "metadata": {"user_id": session["user"]},
        }  # fmt: skip
        await self._deliver("checkout.session.completed", checkout)
        await self._deliver("customer.subscription.created", _object(subscription))
        if subscription["status"] == "active":
            await self._deliver("invoice.paid", _invoice(subscription, "paid"))
        return str(subscription["id"])

    async def cancel_subscription(self, customer_id: str) -> bool:
        now = int(time.time())

        def cancel(state: dict[str, Any]) -> dict[str, Any] | None:
            for sub in state["subscriptions"].values():
                if sub["customer"] == customer_id and sub["status"] in ("trialing", "active", "past_due"):
                    sub.update(status="canceled", canceled_at=now, ended_at=now)
                    return dict(sub)
            return None

        canceled = await self._update(cancel)
        if canceled is None:
            return False
        await self._deliver("customer.subscription.deleted", _object(canceled))
        return True

    async def subscriptions_of(self, customer_id: str) -> list[dict[str, Any]]:
        return [s for s in (await self._load())["subscriptions"].values() if s["customer"] == customer_id]

    async def _deliver(self, kind: str, obj: dict[str, Any]) -> None:
        event = {
            "id": _id("evt").replace("_sim", "_Sim"), "object": "event", "api_version": API_VERSION,
            "created": int(time.time()), "livemode": False, "pending_webhooks": 1, "type": kind,
            "data": {"object": obj}, "request": {"id": None, "idempotency_key": None},
        }  # fmt: skip
        payload = json.dumps(event)
        signature = stripe.WebhookSignature.generate_signature_header(payload, self.webhook_secret)  # Stripe's scheme
        headers = {"Stripe-Signature": signature, "Content-Type": "application/json"}
        try:
            async with (
                aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http,
                http.post(self.webhook_url, data=payload.encode(), headers=headers) as response,
            ):
                if response.status < 300:
                    return
                problem = f"HTTP {response.status}"
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        log.warning("billing simulator: %s %s not delivered (%s); the reconciliation job will retry", kind, event["id"],
                    problem)  # fmt: skip
        await self._update(lambda state: state["undelivered"].append(event))


def _empty() -> dict[str, Any]:
    return {"subscriptions": {}, "customers": {}, "completed": {}, "undelivered": [], "usage": {}}


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def _state(sub: dict[str, Any]) -> SubscriptionState:
    return SubscriptionState(
        id=sub["id"],
        customer_id=sub["customer"],
        status=sub["status"],
        price_ids=(sub["price"],),
        current_period_end=_ts(sub["current_period_end"]),
        trial_end=_ts(sub.get("trial_end")),
        cancel_at_period_end=bool(sub.get("cancel_at_period_end")),
        canceled_at=_ts(sub.get("canceled_at")),
        ended_at=_ts(sub.get("ended_at")),
        created=_ts(sub["created"]) or datetime.now(UTC),
        metadata=dict(sub.get("metadata") or {}),
    )


def _object(sub: dict[str, Any]) -> dict[str, Any]:
    """A subscription as Stripe's events carry it (period end on the item, as in current API versions)."""
    return {
        "id": sub["id"], "object": "subscription", "customer": sub["customer"], "status": sub["status"],
        "cancel_at_period_end": sub["cancel_at_period_end"], "canceled_at": sub["canceled_at"],
        "ended_at": sub["ended_at"], "created": sub["created"], "trial_end": sub["trial_end"],
        "metadata": sub["metadata"], "livemode": False,
        "items": {"object": "list", "data": [{"object": "subscription_item", "price": {"id": sub["price"]},
                                              "current_period_end": sub["current_period_end"], "quantity": 1}]},
    }  # fmt: skip


def _invoice(sub: dict[str, Any], status: str) -> dict[str, Any]:
    return {
        "id": _id("in"), "object": "invoice", "customer": sub["customer"], "status": status,
        "parent": {"type": "subscription_details",
                   "subscription_details": {"subscription": sub["id"], "metadata": sub["metadata"]}},
    }  # fmt: skip


# -- the simulator's pages ------------------------------------------------------------------------------------------

SIMULATOR = web.AppKey("billing_simulator", BillingSimulator)

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} — TradeDesk (simulated billing)</title>
<style>body{{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem;line-height:1.5}}
.sim{{background:#fff3cd;border:1px solid #e0c36a;padding:.75rem;border-radius:.5rem}}
button{{font-size:1rem;padding:.6rem 1.2rem;margin:.25rem .5rem .25rem 0;border-radius:.4rem;border:1px solid #555;
cursor:pointer}}</style></head>
<body><main><h1>{title}</h1>
<p class="sim" role="note"><strong>Simulated billing.</strong> STRIPE_SECRET_KEY is not set, so no card is charged and
no money moves. This page sends the same signed events Stripe would.</p>
{body}</main></body></html>"""


def _page(title: str, body: str, status: int = 200) -> web.Response:
    return web.Response(text=_PAGE.format(title=html.escape(title), body=body), status=status, content_type="text/html")


_EXPIRED = {
    "checkout": ("Checkout link expired", "/upgrade"),
    "portal": ("Billing link expired", "/billing"),
}


def _session(request: web.Request, kind: str) -> tuple[BillingSimulator, dict[str, Any]]:
    """The simulator and the signed session of this page's link; a 404 page for a forged, expired or other link."""
    sim = request.app[SIMULATOR]
    session = sim.read_token(request.match_info["token"])
    if session is None or session.get("kind") != kind:
        title, command = _EXPIRED[kind]
        raise web.HTTPNotFound(
            text=_PAGE.format(title=title, body=f"<p>This link has expired. Run <code>{command}</code> again.</p>"),
            content_type="text/html",
        )
    return sim, session


async def checkout_page(request: web.Request) -> web.Response:
    _, session = _session(request, "checkout")
    trial = f"<p>Includes a {int(session['trial_days'])}-day free trial.</p>" if session.get("trial_days") else ""
    token = html.escape(request.match_info["token"])
    body = (
        f"<p>TradeDesk Pro: more alerts, more AI questions a day, every order type.</p>{trial}"
        f'<form method="post" action="/billing/simulator/checkout/{token}">'
        '<button type="submit" name="action" value="pay">Subscribe (simulated)</button>'
        '<button type="submit" name="action" value="cancel">Cancel</button></form>'
    )
    return _page("Upgrade to Pro", body)


async def checkout_submit(request: web.Request) -> web.Response:
    sim, session = _session(request, "checkout")
    form = await request.post()
    if form.get("action") != "pay":
        raise web.HTTPSeeOther(str(session["cancel"]))
    try:
        await sim.complete_checkout(session)
    except BillingUnavailable:
        return _page("Try again", "<p>The simulated payment could not be completed; please try again.</p>", 503)
    raise web.HTTPSeeOther(str(session["success"]))


async def portal_page(request: web.Request) -> web.Response:
    sim, session = _session(request, "portal")
    subs = await sim.subscriptions_of(str(session["customer"]))
    live = [s for s in subs if s["status"] in ("trialing", "active", "past_due")]
    token = html.escape(request.match_info["token"])
    if live:
        body = (
            f"<p>Your Pro subscription is <strong>{html.escape(live[0]['status'])}</strong>.</p>"
            f'<form method="post" action="/billing/simulator/portal/{token}">'
            '<button type="submit">Cancel subscription (simulated)</button></form>'
        )
    else:
        body = "<p>You have no active subscription.</p>"
    return _page("Your subscription", body)


async def portal_submit(request: web.Request) -> web.Response:
    sim, session = _session(request, "portal")
    await sim.cancel_subscription(str(session["customer"]))
    raise web.HTTPSeeOther(str(session["return"]))


def add_simulator_routes(app: web.Application, simulator: BillingSimulator) -> None:
    app[SIMULATOR] = simulator
    app.router.add_get("/billing/simulator/checkout/{token}", checkout_page)
    app.router.add_post("/billing/simulator/checkout/{token}", checkout_submit)
    app.router.add_get("/billing/simulator/portal/{token}", portal_page)
    app.router.add_post("/billing/simulator/portal/{token}", portal_submit)
