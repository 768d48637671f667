"""bench.fake_stripe on its own: the real `stripe.StripeClient` against it (objects, Stripe's error classes, list
paging, idempotent replays, what Stripe refuses), the event builders, and `sign()` as `stripe.Webhook.construct_event`
checks it (accepted, tampered payload refused, stale timestamp refused beyond the 300 s tolerance).

Nothing of stripe-python is mocked: if these pass, the fake speaks the wire format stripe 16 parses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import stripe

from bench.fake_stripe import (
    FakeStripe,
    checkout_session,
    checkout_session_completed,
    event,
    invoice,
    invoice_paid,
    invoice_payment_failed,
    sign,
    signed,
    subscription,
    subscription_created,
    subscription_deleted,
    subscription_trial_will_end,
    subscription_updated,
    unflatten,
)

SECRET = "whsec_test_tradedesk_0000000000000000"


@pytest.fixture
async def fake() -> AsyncIterator[FakeStripe]:
    async with FakeStripe() as server:
        server.add_price("price_pro", unit_amount=2000)
        server.add_price("price_metered", usage_type="metered", unit_amount=1)
        server.add_meter("ai_queries")
        yield server


@pytest.fixture
async def client(fake: FakeStripe) -> AsyncIterator[stripe.StripeClient]:
    http = stripe.AIOHTTPClient()
    yield stripe.StripeClient(
        fake.api_key, base_addresses={"api": fake.base_url}, http_client=http, max_network_retries=0
    )
    await http.close_async()  # type: ignore[no-untyped-call]


# ------------------------------------------------------------------------------------------------ REST API


async def test_checkout_session_shape_and_recorded_form(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = await client.v1.customers.create_async({"email": "t@example.com", "metadata": {"user_id": "u1"}})
    assert cus.id.startswith("cus_") and cus.object == "customer" and cus.metadata["user_id"] == "u1"
    session = await client.v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "customer": cus.id,
            "line_items": [{"price": "price_pro", "quantity": 1}, {"price": "price_metered"}],
            "client_reference_id": "u1",
            "metadata": {"user_id": "u1"},
            "subscription_data": {"metadata": {"user_id": "u1"}, "trial_period_days": 14},
            "success_url": "https://td.example/ok",
            "cancel_url": "https://td.example/no",
        }
    )
    assert isinstance(session, stripe.checkout.Session)
    assert session.id.startswith("cs_test_") and session.object == "checkout.session"
    assert session.url and session.url.startswith("https://checkout.stripe.com/c/pay/cs_test_")
    assert (session.mode, session.customer, session.client_reference_id) == ("subscription", cus.id, "u1")
    assert (
        session.metadata
        and session.metadata.to_dict() == {"user_id": "u1"}
        and session.status == "open"
        and session.livemode is False
    )
    sent = fake.last("POST", "/v1/checkout/sessions")
    assert sent.form["line_items[1][price]"] == "price_metered"
    assert sent.params["subscription_data"] == {"metadata": {"user_id": "u1"}, "trial_period_days": "14"}
    assert sent.params["line_items"] == [{"price": "price_pro", "quantity": "1"}, {"price": "price_metered"}]


async def test_checkout_refusals_are_stripes(fake: FakeStripe, client: stripe.StripeClient) -> None:
    base: dict[str, Any] = {"mode": "subscription", "success_url": "https://td.example/ok"}
    cases: list[tuple[dict[str, Any], int, str | None, str | None]] = [
        ({"line_items": [{"price": "price_nope", "quantity": 1}]}, 404, "resource_missing", "line_items[0][price]"),
        ({"line_items": [{"price": "price_metered", "quantity": 1}]}, 400, None, "line_items[0][quantity]"),
        ({"line_items": [{"price": "price_pro"}]}, 400, "parameter_missing", "line_items[0][quantity]"),
        (
            {"line_items": [{"price": "price_pro", "quantity": 1}], "customer": "cus_x", "customer_email": "a@b.c"},
            400,
            "parameter_unknown",
            "customer_email",
        ),
        ({"line_items": [{"price": "price_pro", "quantity": 1}], "customer": "cus_x"}, 404, "resource_missing", None),
        ({}, 400, "parameter_missing", "line_items"),
    ]
    for extra, status, code, param in cases:
        with pytest.raises(stripe.InvalidRequestError) as caught:
            await client.v1.checkout.sessions.create_async(base | extra)  # type: ignore[arg-type]
        assert caught.value.http_status == status, extra
        if code is not None:
            assert caught.value.code == code, extra
        if param is not None:
            assert caught.value.param == param, extra
        assert caught.value.request_id and caught.value.request_id.startswith("req_")
    assert fake.checkout_sessions == {}


async def test_portal_customer_and_subscription(fake: FakeStripe, client: stripe.StripeClient) -> None:
    cus = fake.add_customer(email="t@example.com")
    portal = await client.v1.billing_portal.sessions.create_async(
        {"customer": cus["id"], "return_url": "https://td.example"}
    )
    assert portal.object == "billing_portal.session" and portal.url.startswith("https://billing.stripe.com/")
    assert portal.return_url == "https://td.example" and portal.customer == cus["id"]
    assert (await client.v1.customers.retrieve_async(cus["id"])).email == "t@example.com"

    sub = fake.add_subscription(customer=cus["id"], prices=["price_pro", "price_metered"], metadata={"user_id": "u"})
    got = await client.v1.subscriptions.retrieve_async(sub["id"])
    assert isinstance(got, stripe.Subscription)
    assert got.customer == cus["id"] and got.metadata["user_id"] == "u"
    items = got["items"]["data"]
    assert [i.price.id for i in items] == ["price_pro", "price_metered"]
    assert items[1].price.recurring is not None and items[1].price.recurring.usage_type == "metered"
    assert items[0].quantity == 1 and items[1].to_dict()["quantity"] is None
    assert items[0].current_period_end > got.created

    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.subscriptions.retrieve_async("sub_missing")
    assert (caught.value.http_status, caught.value.code) == (404, "resource_missing")
    assert "No such subscription: 'sub_missing'" in str(caught.value)


async def test_events_list_filters_and_auto_paging(fake: FakeStripe, client: stripe.StripeClient) -> None:
    t0 = int(time.time()) - 1000
    for i in range(25):
        fake.add_event(
            event("invoice.paid", {"id": f"in_{i}", "object": "invoice"}, created=t0 + i), delivered=i % 2 == 0
        )
    page = await client.v1.events.list_async({"limit": 5, "delivery_success": False, "created": {"gte": t0 + 10}})
    assert page.object == "list" and page.has_more and len(page.data) == 5
    assert [e.data.object.id for e in page.data] == ["in_23", "in_21", "in_19", "in_17", "in_15"]
    seen = [e.data.object.id async for e in page.auto_paging_iter()]
    assert seen == [f"in_{i}" for i in (23, 21, 19, 17, 15, 13, 11)]
    assert fake.requests_to("GET", "/v1/events")[-1].query["starting_after"]  # the library followed the cursor

    everything = await client.v1.events.list_async({"limit": 100})
    assert len(everything.data) == 25 and not everything.has_more
    only_paid = await client.v1.events.list_async({"type": "invoice.*", "created": {"lt": t0 + 2}})
    assert [e.id for e in only_paid.data] == [everything.data[-2].id, everything.data[-1].id]
    with pytest.raises(stripe.InvalidRequestError, match="less than or equal to 100"):
        await client.v1.events.list_async({"limit": 101})


async def test_meter_events(fake: FakeStripe, client: stripe.StripeClient) -> None:
    now = int(time.time())
    params: dict[str, Any] = {
        "event_name": "ai_queries",
        "payload": {"stripe_customer_id": "cus_1", "value": "2"},
        "identifier": "q-1",
        "timestamp": now,
    }
    created = await client.v1.billing.meter_events.create_async(params)  # type: ignore[arg-type]
    assert created.object == "billing.meter_event" and created.identifier == "q-1" and created.timestamp == now
    assert created.payload.to_dict() == {"stripe_customer_id": "cus_1", "value": "2"}
    with pytest.raises(stripe.InvalidRequestError) as caught:
        await client.v1.billing.meter_events.create_async(params)  # type: ignore[arg-type]
    assert caught.value.http_status == 400
    assert str(caught.value.user_message) == "An event already exists with identifier q-1."
    assert len(fake.meter_events) == 1
    for bad, fragment in [
        ({"event_name": "nope"}, "No active meter"),
        ({"identifier": "q-2", "timestamp": now - 36 * 86400}, "35 calendar days"),
        ({"identifier": "q-3", "timestamp": now + 600}, "5 minutes"),
    ]:
        with pytest.raises(stripe.InvalidRequestError, match=fragment):
            await client.v1.billing.meter_events.create_async(params | bad)  # type: ignore[arg-type]
    assert [e["identifier"] for e in fake.meter_events] == ["q-1"]


async def test_idempotency_key_replays_and_refuses_other_params(fake: FakeStripe, client: stripe.StripeClient) -> None:
    options: Any = {"idempotency_key": "key-1"}
    first = await client.v1.customers.create_async({"email": "a@example.com"}, options)
    again = await client.v1.customers.create_async({"email": "a@example.com"}, options)
    assert again.id == first.id and len(fake.customers) == 1
    assert fake.requests_to("POST", "/v1/customers")[-1].replayed
    with pytest.raises(stripe.IdempotencyError):
        await client.v1.customers.create_async({"email": "b@example.com"}, options)


async def test_errors_map_to_stripe_python_classes(fake: FakeStripe, client: stripe.StripeClient) -> None:
    fake.fail_next(500)
    with pytest.raises(stripe.APIError) as server_error:
        await client.v1.customers.retrieve_async("cus_x")
    assert server_error.value.http_status == 500
    fake.fail_next(429)
    with pytest.raises(stripe.RateLimitError):
        await client.v1.customers.retrieve_async("cus_x")
    bad_http = stripe.AIOHTTPClient()
    bad = stripe.StripeClient("sk_test_wrong", base_addresses={"api": fake.base_url}, http_client=bad_http)
    with pytest.raises(stripe.AuthenticationError, match="Invalid API Key"):
        await bad.v1.customers.retrieve_async("cus_x")
    await bad_http.close_async()  # type: ignore[no-untyped-call]
    auth = {"Authorization": f"Bearer {fake.api_key}"}
    async with aiohttp.ClientSession() as http, http.get(f"{fake.base_url}/v1/nothing", headers=auth) as r:
        assert r.status == 404 and r.content_type == "application/json"
        body = await r.json()
        assert body["error"]["type"] == "invalid_request_error"
        assert "Unrecognized request URL" in body["error"]["message"]
        assert r.headers["Request-Id"].startswith("req_")


async def test_retry_with_backoff_reuses_the_key_through_a_500(fake: FakeStripe) -> None:
    http = stripe.AIOHTTPClient()
    retrying = stripe.StripeClient(
        fake.api_key, base_addresses={"api": fake.base_url}, http_client=http, max_network_retries=1
    )
    fake.fail_next(500, path="/v1/customers")
    cus = await retrying.v1.customers.create_async({"email": "r@example.com"})
    await http.close_async()  # type: ignore[no-untyped-call]
    first, second = fake.requests_to("POST", "/v1/customers")
    assert (first.status, second.status) == (500, 200)
    assert first.idempotency_key == second.idempotency_key
    assert list(fake.customers) == [cus.id]


def test_unflatten() -> None:
    form = {
        "line_items[0][price]": "a",
        "line_items[1][price]": "b",
        "line_items[0][quantity]": "1",
        "metadata[user_id]": "u",
        "mode": "subscription",
    }
    assert unflatten(form) == {
        "line_items": [{"price": "a", "quantity": "1"}, {"price": "b"}],
        "metadata": {"user_id": "u"},
        "mode": "subscription",
    }


# ------------------------------------------------------------------------------------------------ webhooks


def test_sign_is_the_documented_v1_scheme_and_construct_event_accepts_it() -> None:
    evt = subscription_created(subscription(metadata={"user_id": "u1"}))
    payload, headers = signed(evt, SECRET)
    header = headers["Stripe-Signature"]
    t = int(header.split(",")[0].removeprefix("t="))
    expected = hmac.new(SECRET.encode(), f"{t}.".encode() + payload, hashlib.sha256).hexdigest()
    assert header == f"t={t},v1={expected}"
    assert abs(t - time.time()) < 5

    constructed = stripe.Webhook.construct_event(payload, header, SECRET)
    assert constructed.id == evt["id"] and constructed.type == "customer.subscription.created"
    assert constructed.data.object.metadata["user_id"] == "u1"


def test_construct_event_refuses_a_tampered_payload_a_wrong_secret_and_a_stale_timestamp() -> None:
    payload, headers = signed(invoice_paid(invoice(subscription())), SECRET)
    header = headers["Stripe-Signature"]
    tampered = payload.replace(b'"amount_paid": 2000', b'"amount_paid": 1')
    assert tampered != payload
    with pytest.raises(stripe.SignatureVerificationError, match="No signatures found matching"):
        stripe.Webhook.construct_event(tampered, header, SECRET)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(payload, header, SECRET + "x")

    stale = sign(payload, SECRET, timestamp=int(time.time()) - 301)
    with pytest.raises(stripe.SignatureVerificationError, match="tolerance"):
        stripe.Webhook.construct_event(payload, stale, SECRET)  # default tolerance: 300 s
    recent = sign(payload, SECRET, timestamp=int(time.time()) - 290)
    assert stripe.Webhook.construct_event(payload, recent, SECRET).type == "invoice.paid"


def test_event_builders_are_real_shaped() -> None:
    sub = subscription(
        customer="cus_1", prices=["price_pro"], status="trialing", trial_end=int(time.time()) + 3 * 86400
    )
    canceled = subscription(customer="cus_1", status="canceled", canceled_at=1, ended_at=2, cancel_at_period_end=True)
    session = checkout_session(
        status="complete", customer="cus_1", client_reference_id="u1", subscription=sub["id"], invoice="in_1"
    )
    events = [
        checkout_session_completed(session),
        subscription_created(sub),
        subscription_updated(sub, {"status": "incomplete"}),
        subscription_deleted(canceled),
        subscription_trial_will_end(sub),
        invoice_paid(invoice(sub)),
        invoice_payment_failed(invoice(sub, status="open", billing_reason="subscription_cycle")),
    ]
    for evt in events:
        assert evt["id"].startswith("evt_") and evt["object"] == "event" and evt["livemode"] is False
        assert set(evt) == {
            "id",
            "object",
            "api_version",
            "created",
            "data",
            "livemode",
            "pending_webhooks",
            "request",
            "type",
        }
        assert evt["request"] == {"id": None, "idempotency_key": None} and evt["pending_webhooks"] == 1
        assert json.loads(json.dumps(evt)) == evt
    assert [e["type"] for e in events] == [
        "checkout.session.completed",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.trial_will_end",
        "invoice.paid",
        "invoice.payment_failed",
    ]
    done = events[0]["data"]["object"]
    assert done["object"] == "checkout.session" and done["url"] is None and done["subscription"] == sub["id"]
    assert done["payment_status"] == "paid" and done["client_reference_id"] == "u1"
    assert events[2]["data"]["previous_attributes"] == {"status": "incomplete"}
    assert "previous_attributes" not in events[1]["data"]
    item = sub["items"]["data"][0]
    assert item["object"] == "subscription_item" and item["price"]["id"] == "price_pro"
    assert item["current_period_end"] > item["current_period_start"] and "current_period_end" not in sub
    failed = events[6]["data"]["object"]
    assert (failed["status"], failed["amount_paid"], failed["attempt_count"]) == ("open", 0, 1)
    assert failed["parent"]["subscription_details"]["subscription"] == sub["id"]
    paid = events[5]["data"]["object"]
    assert (paid["status"], paid["amount_paid"]) == ("paid", 2000)
    # stripe-python builds typed objects from them.
    assert isinstance(stripe.Event.construct_from(events[5], "sk_test_x").data.object, stripe.Invoice)


async def test_complete_checkout_plays_the_customer_paying(fake: FakeStripe, client: stripe.StripeClient) -> None:
    session = await client.v1.checkout.sessions.create_async(
        {
            "mode": "subscription",
            "customer_email": "t@example.com",
            "line_items": [{"price": "price_pro", "quantity": 1}, {"price": "price_metered"}],
            "client_reference_id": "u1",
            "metadata": {"user_id": "u1"},
            "subscription_data": {"metadata": {"user_id": "u1"}, "trial_period_days": 7},
            "success_url": "https://td.example/ok",
        }
    )
    done = fake.complete_checkout(session.id)
    assert [e["type"] for e in done.events] == [
        "customer.subscription.created",
        "invoice.paid",
        "checkout.session.completed",
    ]
    assert done.session["status"] == "complete" and done.session["url"] is None
    assert done.session["subscription"] == done.subscription["id"] and done.session["client_reference_id"] == "u1"
    assert done.subscription["metadata"] == {"user_id": "u1"} and done.subscription["status"] == "trialing"
    assert done.subscription["customer"] == done.session["customer"] in fake.customers
    assert done.invoice["amount_paid"] == 0  # a trial's first invoice
    got = await client.v1.subscriptions.retrieve_async(done.subscription["id"])
    assert [i.price.id for i in got["items"]["data"]] == ["price_pro", "price_metered"]
    listed = await client.v1.events.list_async({"type": "checkout.session.completed"})
    assert [e.id for e in listed.data] == [done.events[2]["id"]]
    with pytest.raises(ValueError, match="complete"):
        fake.complete_checkout(session.id)


async def test_event_cursor_is_a_place_in_the_order_even_when_filtered_out(
    fake: FakeStripe, client: stripe.StripeClient
) -> None:
    t0 = int(time.time()) - 100
    evts = [
        fake.add_event(event("invoice.paid", {"id": f"in_{i}"}, created=t0 + i), delivered=i != 2) for i in range(5)
    ]
    # evts[3] is delivered, so it doesn't match delivery_success=false, but it still marks a place.
    page = await client.v1.events.list_async({"delivery_success": False, "starting_after": evts[3]["id"]})
    assert [e.id for e in page.data] == [evts[2]["id"]]
    before = await client.v1.events.list_async({"ending_before": evts[1]["id"], "limit": 2})
    assert [e.id for e in before.data] == [evts[3]["id"], evts[2]["id"]] and before.has_more
    with pytest.raises(stripe.InvalidRequestError, match="No such event"):
        await client.v1.events.list_async({"starting_after": "evt_unknown"})
