"""StripeGateway with the real `stripe.StripeClient` against bench.fake_stripe: the exact form bodies stripe-python
sends for Checkout, the Portal and meter events, the mapping of a subscription to SubscriptionState, event paging
and filters, and the two error classes (BillingUnavailable for "try later", BillingRejected for a refusal)."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import pytest
import stripe

from app.stripe_gateway import StripeGateway
from bench.fake_stripe import FakeStripe, event, new_id, subscription_updated
from core.billing.gateway import BillingGateway, BillingRejected, BillingUnavailable, CheckoutRequest

PRO = "price_pro_test"
METERED = "price_pro_metered_test"
METER = "tradedesk_ai_queries"
USER = uuid.UUID("8f14e45f-ceea-467f-a0e6-2b8d3c1e6a01")


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        server.add_price(PRO, unit_amount=2000)
        server.add_price(METERED, usage_type="metered", unit_amount=1)
        server.add_meter(METER)
        yield server


def make_gateway(fake: FakeStripe, *, metered: bool = True, retries: int = 0) -> StripeGateway:
    return StripeGateway(
        fake.api_key,
        price_pro=PRO,
        price_pro_metered=METERED if metered else None,
        meter_event=METER,
        api_base=fake.base_url,
        max_network_retries=retries,
    )


@pytest.fixture
async def gateway(fake: FakeStripe) -> AsyncIterator[StripeGateway]:
    gw = make_gateway(fake)
    yield gw
    await gw.close()


def checkout_request(**kw: object) -> CheckoutRequest:
    base: dict[str, object] = {
        "user_id": USER,
        "success_url": "https://td.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://td.example/billing/cancel",
    }
    return CheckoutRequest(**(base | kw))  # type: ignore[arg-type]


async def test_is_a_billing_gateway_and_constructs_offline() -> None:
    # Nothing listens on port 9: construction must not touch the network.
    gw: BillingGateway = StripeGateway(
        "sk_test_x", price_pro=PRO, price_pro_metered=None, meter_event=None, api_base="http://127.0.0.1:9"
    )
    assert gw.mode == "stripe"
    assert isinstance(gw, StripeGateway)
    await gw.close()


async def test_checkout_form_body_with_both_prices_and_email(fake: FakeStripe, gateway: StripeGateway) -> None:
    link = await gateway.create_checkout(checkout_request(email="trader@example.com"))

    sent = fake.last("POST", "/v1/checkout/sessions")
    assert sent.form == {
        "mode": "subscription",
        "line_items[0][price]": PRO,
        "line_items[0][quantity]": "1",
        "line_items[1][price]": METERED,
        "client_reference_id": str(USER),
        "metadata[user_id]": str(USER),
        "subscription_data[metadata][user_id]": str(USER),
        "success_url": "https://td.example/billing/success?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": "https://td.example/billing/cancel",
        "customer_email": "trader@example.com",
    }
    assert sent.headers["content-type"] == "application/x-www-form-urlencoded"
    assert sent.stripe_version == stripe.api_version
    assert sent.idempotency_key  # stripe-python adds one to every POST
    assert sent.headers["authorization"] == f"Bearer {fake.api_key}"

    session = fake.checkout_sessions[link.session_id]
    assert link.session_id.startswith("cs_test_")
    assert link.url == session["url"] and link.url.startswith("https://checkout.stripe.com/")
    assert session["client_reference_id"] == str(USER)
    assert session["metadata"] == {"user_id": str(USER)}


async def test_checkout_reuses_the_customer_and_asks_for_a_trial_only_when_told(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    cus = fake.add_customer(email="trader@example.com")
    await gateway.create_checkout(checkout_request(customer_id=cus["id"], email="trader@example.com", trial_days=7))
    sent = fake.last("POST", "/v1/checkout/sessions").form
    assert sent["customer"] == cus["id"]
    assert "customer_email" not in sent  # Stripe refuses both together
    assert sent["subscription_data[trial_period_days]"] == "7"

    await gateway.create_checkout(checkout_request())
    sent = fake.last("POST", "/v1/checkout/sessions").form
    assert not {"customer", "customer_email", "subscription_data[trial_period_days]"} & sent.keys()
    assert sent["subscription_data[metadata][user_id]"] == str(USER)


async def test_checkout_without_a_metered_price_sends_one_line_item(fake: FakeStripe) -> None:
    gw = make_gateway(fake, metered=False)
    try:
        await gw.create_checkout(checkout_request())
    finally:
        await gw.close()
    sent = fake.last("POST", "/v1/checkout/sessions")
    assert [k for k in sent.form if k.startswith("line_items")] == ["line_items[0][price]", "line_items[0][quantity]"]
    assert sent.params["line_items"] == [{"price": PRO, "quantity": "1"}]


async def test_checkout_with_an_unknown_price_is_a_clear_rejection(fake: FakeStripe) -> None:
    gw = StripeGateway(
        fake.api_key,
        price_pro="price_typo",
        price_pro_metered=None,
        meter_event=None,
        api_base=fake.base_url,
        max_network_retries=0,
    )
    try:
        with pytest.raises(BillingRejected) as caught:
            await gw.create_checkout(checkout_request())
    finally:
        await gw.close()
    assert caught.value.status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "line_items[0][price]"
    assert "No such price: 'price_typo'" in str(caught.value)


async def test_portal(fake: FakeStripe, gateway: StripeGateway) -> None:
    cus = fake.add_customer()
    url = await gateway.create_portal(cus["id"], "https://td.example/dashboard")
    assert url == fake.portal_sessions[-1]["url"]
    assert url.startswith("https://billing.stripe.com/p/session/")
    assert fake.last("POST", "/v1/billing_portal/sessions").form == {
        "customer": cus["id"],
        "return_url": "https://td.example/dashboard",
    }


async def test_retrieve_subscription_maps_state_and_period_end_from_the_items(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    created = 1_785_312_000
    sub = fake.add_subscription(
        customer="cus_Q1",
        status="trialing",
        prices=[PRO, METERED],
        created=created,
        current_period_end=created + 7 * 86400,
        period_ends={METERED: created + 30 * 86400},
        trial_end=created + 7 * 86400,
        cancel_at_period_end=True,
        canceled_at=created + 3600,
        metadata={"user_id": str(USER)},
    )
    state = await gateway.retrieve_subscription(sub["id"])
    assert state is not None
    assert state.id == sub["id"] and state.customer_id == "cus_Q1" and state.status == "trialing"
    assert state.price_ids == (PRO, METERED)
    # No period end on the subscription itself; the latest item's end wins.
    assert "current_period_end" not in sub
    assert state.current_period_end == datetime.fromtimestamp(created + 30 * 86400, tz=UTC)
    assert state.trial_end == datetime.fromtimestamp(created + 7 * 86400, tz=UTC)
    assert state.cancel_at_period_end is True
    assert state.canceled_at == datetime.fromtimestamp(created + 3600, tz=UTC)
    assert state.ended_at is None
    assert state.created == datetime.fromtimestamp(created, tz=UTC)
    assert state.metadata == {"user_id": str(USER)}
    assert fake.last("GET", f"/v1/subscriptions/{sub['id']}").status == 200


async def test_retrieve_unknown_subscription_is_none(fake: FakeStripe, gateway: StripeGateway) -> None:
    assert await gateway.retrieve_subscription("sub_doesnotexist") is None
    assert fake.last("GET", "/v1/subscriptions/sub_doesnotexist").status == 404


async def test_undelivered_events_pages_through_all_with_the_filters(fake: FakeStripe, gateway: StripeGateway) -> None:
    now = int(time.time())
    since = now - 3600
    old = fake.add_event(
        event("invoice.paid", {"id": "in_old", "object": "invoice"}, created=since - 1), delivered=False
    )
    delivered = fake.add_event(event("invoice.paid", {"id": "in_ok", "object": "invoice"}, created=now - 10))
    wanted = [
        fake.add_event(
            subscription_updated({"id": f"sub_{i}", "object": "subscription"}, {"status": "active"}, created=since + i),
            delivered=False,
        )
        for i in range(230)
    ]
    events = await gateway.undelivered_events(datetime.fromtimestamp(since, tz=UTC))

    assert sorted(e["id"] for e in events) == sorted(e["id"] for e in wanted)
    assert len({e["id"] for e in events}) == 230
    assert old["id"] not in {e["id"] for e in events} and delivered["id"] not in {e["id"] for e in events}
    assert events[0] == wanted[-1]  # plain dicts, newest first, exactly as Stripe sent them
    pages = fake.requests_to("GET", "/v1/events")
    assert len(pages) == 3
    assert pages[0].query == {"delivery_success": "false", "created[gte]": str(since), "limit": "100"}
    assert pages[1].query["starting_after"] == events[99]["id"]
    assert pages[2].query["starting_after"] == events[199]["id"]
    assert all(p.query["delivery_success"] == "false" and p.query["created[gte]"] == str(since) for p in pages)


async def test_undelivered_events_none(gateway: StripeGateway) -> None:
    assert await gateway.undelivered_events(datetime.now(UTC) - timedelta(days=1)) == []


async def test_report_usage_sends_a_meter_event_and_is_idempotent_on_identifier(
    fake: FakeStripe, gateway: StripeGateway
) -> None:
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    await gateway.report_usage(customer_id="cus_Q1", identifier="usage:42", value=3, at=at)
    sent = fake.last("POST", "/v1/billing/meter_events")
    assert sent.form == {
        "event_name": METER,
        "payload[stripe_customer_id]": "cus_Q1",
        "payload[value]": "3",
        "identifier": "usage:42",
        "timestamp": str(int(at.timestamp())),
    }
    # A retried report (a new request, a new Idempotency-Key): Stripe refuses the identifier, the gateway is done.
    await gateway.report_usage(customer_id="cus_Q1", identifier="usage:42", value=3, at=at)
    second = fake.last("POST", "/v1/billing/meter_events")
    assert second.status == 400 and "already exists" in second.response["error"]["message"]
    assert second.idempotency_key != sent.idempotency_key
    assert [e["identifier"] for e in fake.meter_events] == ["usage:42"]

    await gateway.report_usage(customer_id="cus_Q1", identifier="usage:43", value=1, at=at)
    assert [e["identifier"] for e in fake.meter_events] == ["usage:42", "usage:43"]


async def test_report_usage_for_an_unknown_meter_is_rejected(fake: FakeStripe) -> None:
    gw = StripeGateway(
        fake.api_key,
        price_pro=PRO,
        price_pro_metered=METERED,
        meter_event="no_such_meter",
        api_base=fake.base_url,
        max_network_retries=0,
    )
    try:
        with pytest.raises(BillingRejected, match="No active meter"):
            await gw.report_usage(customer_id="cus_Q1", identifier="u1", value=1, at=datetime.now(UTC))
    finally:
        await gw.close()


async def test_a_500_is_billing_unavailable(fake: FakeStripe, gateway: StripeGateway) -> None:
    fake.fail_next(500)
    with pytest.raises(BillingUnavailable, match="HTTP 500"):
        await gateway.create_checkout(checkout_request())
    fake.fail_next(429)
    with pytest.raises(BillingUnavailable):
        await gateway.retrieve_subscription("sub_x")
    assert fake.checkout_sessions == {}


async def test_unreachable_stripe_is_billing_unavailable() -> None:
    async with FakeStripe() as gone:
        base = gone.base_url
    gw = StripeGateway(
        "sk_test_x", price_pro=PRO, price_pro_metered=None, meter_event=None, api_base=base, max_network_retries=0
    )
    try:
        with pytest.raises(BillingUnavailable):
            await gw.create_portal("cus_x", "https://td.example")
    finally:
        await gw.close()


async def test_a_retried_500_reuses_the_idempotency_key(fake: FakeStripe) -> None:
    gw = make_gateway(fake, retries=1)
    fake.fail_next(500, path="/v1/checkout/sessions")
    try:
        link = await gw.create_checkout(checkout_request())
    finally:
        await gw.close()
    first, second = fake.requests_to("POST", "/v1/checkout/sessions")
    assert (first.status, second.status) == (500, 200)
    assert first.idempotency_key == second.idempotency_key and first.form == second.form
    assert list(fake.checkout_sessions) == [link.session_id]


async def test_a_400_is_a_clear_rejection(fake: FakeStripe, gateway: StripeGateway) -> None:
    with pytest.raises(BillingRejected) as caught:
        await gateway.create_portal("cus_unknown", "https://td.example")
    assert caught.value.status == 404 and caught.value.code == "resource_missing" and caught.value.param == "customer"

    fake.fail_next(400, type="invalid_request_error", code="parameter_invalid_string", message="Invalid URL: nope")
    with pytest.raises(BillingRejected) as caught:
        await gateway.create_checkout(checkout_request())
    assert caught.value.status == 400 and caught.value.code == "parameter_invalid_string"
    assert "Invalid URL: nope" in str(caught.value) and "HTTP 400" in str(caught.value)


async def test_a_wrong_api_key_is_a_rejection(fake: FakeStripe) -> None:
    gw = StripeGateway(
        "sk_test_wrong_key_1234", price_pro=PRO, price_pro_metered=None, meter_event=None, api_base=fake.base_url
    )
    try:
        with pytest.raises(BillingRejected) as caught:
            await gw.retrieve_subscription(new_id("sub"))
    finally:
        await gw.close()
    assert caught.value.status == 401


async def test_a_slow_stripe_times_out_as_billing_unavailable(fake: FakeStripe) -> None:
    gw = StripeGateway(
        fake.api_key,
        price_pro=PRO,
        price_pro_metered=None,
        meter_event=None,
        api_base=fake.base_url,
        max_network_retries=0,
        timeout_s=0.1,
    )
    fake.latency_s = 0.5
    try:
        with pytest.raises(BillingUnavailable):
            await gw.retrieve_subscription("sub_slow")
    finally:
        await gw.close()
