"""`StripeGateway`: core's `BillingGateway` over stripe-python's `StripeClient`, async methods only.

stripe-python details this relies on (stripe 16):
- `StripeClient(api_key, base_addresses={"api": ...}, http_client=..., max_network_retries=...)`: requests go to
  `base_addresses["api"] + "/v1/..."` (tests point it at bench.fake_stripe); the client pins `Stripe-Version` to
  the version the library was generated for.
- `*_async` methods need an async-capable http client. Left alone, StripeClient builds a sync client with an async
  fallback (httpx when importable); TradeDesk passes `stripe.AIOHTTPClient` explicitly: aiohttp is already a direct
  dependency, the session is created lazily inside the running loop, and a sync call fails loudly instead of
  blocking the loop. `close()` closes that session.
- Parameters are form-encoded with bracket keys (`line_items[0][price]`, `subscription_data[metadata][user_id]`,
  booleans as "true"/"false", None dropped). Every POST carries a generated `Idempotency-Key`, reused by the
  library's own retries, so retrying a create never makes a second object.
- Errors: 400/404 -> `InvalidRequestError` (code/param from Stripe's body), 401 `AuthenticationError`, 402
  `CardError`, 403 `PermissionError`, 429 `RateLimitError`, anything else (5xx, 409) `APIError`; no response at all
  -> `APIConnectionError`. The gateway turns the "try later" ones into `BillingUnavailable` and the rest into
  `BillingRejected`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp
import stripe

from core.billing.gateway import (
    BillingRejected,
    BillingUnavailable,
    CheckoutLink,
    CheckoutRequest,
    SubscriptionState,
    subscription_state,  # re-exported for callers
)

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TIMEOUT_S = 20.0
EVENTS_PAGE = 100  # Stripe's maximum `limit`
_ALREADY_EXISTS = "An event already exists with identifier"


def _ts(value: Any) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), tz=UTC)


def _plain(obj: Any) -> dict[str, Any]:
    """A StripeObject as plain JSON-shaped dicts and lists."""
    if isinstance(obj, stripe.StripeObject):
        return obj.to_dict(recursive=True)
    return dict(obj)


class StripeGateway:
    """Billing through Stripe: Checkout, the Billing Portal, subscription state, undelivered events, meter events.

    Every method raises `BillingUnavailable` when Stripe can't be reached or fails on its side (after
    `max_network_retries` retries by stripe-python, with backoff and the same Idempotency-Key), and
    `BillingRejected` when Stripe refuses the request.
    """

    mode = "stripe"

    def __init__(
        self,
        api_key: str,
        *,
        price_pro: str,
        price_pro_metered: str | None,
        meter_event: str | None,
        api_base: str | None = None,
        max_network_retries: int = 2,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        self.price_pro = price_pro
        self.price_pro_metered = price_pro_metered
        self.meter_event = meter_event
        self.meters = meter_event is not None
        # No network and no aiohttp session here: AIOHTTPClient opens its session on the first request.
        self._http = stripe.AIOHTTPClient(timeout=aiohttp.ClientTimeout(total=timeout_s))
        self._client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            http_client=self._http,
            max_network_retries=max_network_retries,
        )

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # --------------------------------------------------------------------------------------------- calls

    async def _call(self, what: str, call: Awaitable[T]) -> T:
        try:
            return await call
        except (stripe.APIConnectionError, stripe.RateLimitError) as exc:
            raise BillingUnavailable(f"stripe: {what}: {exc.user_message or exc}") from exc
        except (aiohttp.ClientError, TimeoutError) as exc:
            # AIOHTTPClient reads the body outside its own error handling: a connection lost mid-body lands here.
            raise BillingUnavailable(f"stripe: {what}: {type(exc).__name__}: {exc}") from exc
        except stripe.APIError as exc:  # 5xx, 409 (lock timeout), or a body that isn't Stripe's
            raise BillingUnavailable(
                f"stripe: {what}: HTTP {exc.http_status}: {exc.user_message or exc} (request {exc.request_id})"
            ) from exc
        except stripe.StripeError as exc:
            err = exc.error
            code = getattr(err, "code", None) or exc.code
            param = getattr(err, "param", None)
            raise BillingRejected(
                f"stripe refused {what} (HTTP {exc.http_status}"
                + (f", {code}" if code else "")
                + (f", param {param}" if param else "")
                + f"): {exc.user_message or exc} (request {exc.request_id})",
                status=exc.http_status,
                code=code,
                param=param,
            ) from exc

    async def create_checkout(self, request: CheckoutRequest) -> CheckoutLink:
        user_id = str(request.user_id)
        line_items: list[dict[str, Any]] = [{"price": self.price_pro, "quantity": 1}]
        if self.price_pro_metered:
            line_items.append({"price": self.price_pro_metered})  # metered prices take no quantity
        subscription_data: dict[str, Any] = {"metadata": {"user_id": user_id}}
        if request.trial_days:
            subscription_data["trial_period_days"] = request.trial_days
        params: dict[str, Any] = {
            "mode": "subscription",
            "line_items": line_items,
            "client_reference_id": user_id,
            "metadata": {"user_id": user_id},
            # Checkout doesn't copy the session's metadata to the subscription it creates.
            "subscription_data": subscription_data,
            "success_url": request.success_url,
            "cancel_url": request.cancel_url,
        }
        if request.customer_id:
            params["customer"] = request.customer_id
        elif request.email:
            params["customer_email"] = request.email
        session = await self._call("checkout", self._client.v1.checkout.sessions.create_async(params))  # type: ignore[arg-type]
        if not session.url:
            raise BillingRejected(f"stripe checkout session {session.id} has no url", status=None)
        return CheckoutLink(session_id=session.id, url=session.url)

    async def create_portal(self, customer_id: str, return_url: str) -> str:
        session = await self._call(
            "portal",
            self._client.v1.billing_portal.sessions.create_async({"customer": customer_id, "return_url": return_url}),
        )
        return session.url

    async def retrieve_subscription(self, subscription_id: str) -> SubscriptionState | None:
        # The webhook's hot path (one call per event): `raw_request_async` is the same request, with the same
        # retries and errors, but returns the parsed JSON rather than a tree of StripeObjects that `_plain` would
        # only turn back into dicts (building and unbuilding it was ~0.5 ms of CPU per call, half the webhook's).
        try:
            response = await self._call(
                "subscription",
                self._client.raw_request_async("get", f"/v1/subscriptions/{quote(subscription_id, safe='')}"),
            )
        except BillingRejected as exc:
            if exc.code == "resource_missing":
                return None
            raise
        return subscription_state(response.data)

    async def undelivered_events(self, since: datetime) -> list[dict[str, Any]]:
        params: dict[str, Any] = {
            "delivery_success": False,
            "created": {"gte": int(since.timestamp())},
            "limit": EVENTS_PAGE,
        }
        out: list[dict[str, Any]] = []
        while True:
            page = await self._call("events", self._client.v1.events.list_async(params))  # type: ignore[arg-type]
            data = [_plain(e) for e in page.data]
            out.extend(data)
            if not page.has_more or not data:
                return out
            params = {**params, "starting_after": data[-1]["id"]}

    async def report_usage(self, *, customer_id: str, identifier: str, value: int, at: datetime) -> None:
        if not self.meter_event:
            raise BillingRejected("usage reporting needs STRIPE_METER_EVENT", status=None)
        params: dict[str, Any] = {
            "event_name": self.meter_event,
            "payload": {"stripe_customer_id": customer_id, "value": str(value)},
            "identifier": identifier,
            "timestamp": int(at.timestamp()),
        }
        try:
            await self._call("meter event", self._client.v1.billing.meter_events.create_async(params))  # type: ignore[arg-type]
        except BillingRejected as exc:
            # Stripe keeps identifiers unique (for at least 24 hours) and refuses a repeat: it was reported before.
            if exc.status == 400 and _ALREADY_EXISTS in exc.message and identifier in exc.message:
                log.info("stripe: meter event %s was already reported", identifier)
                return
            raise
