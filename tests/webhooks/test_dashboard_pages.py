"""The dashboard's pages and forms: each shows only the signed-in user's objects, every POST needs the session's
CSRF token and our own origin, and another user's (or a made-up) id answers 404 exactly like a missing one."""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import replace
from decimal import Decimal

from core.db.database import raw_connection
from core.notifications.outbox import enqueue
from core.orders.broker import OrderType, Side, TimeInForce
from core.orders.proposals import Confirmed
from tests.webhooks.conftest import Site, csrf_of
from tests.webhooks.pages import rows, section, text
from tools.desk import OrderDraft
from webhooks.billing_sim import BillingSimulator
from webhooks.pages import topic_renderer

JSON = {"Accept": "application/json"}


async def signed_in(site: Site, user: uuid.UUID, page: str = "/") -> tuple[str, str]:
    """(session, csrf token) for `user`, read off a page as a browser would."""
    session = await site.sign_in(user)
    resp = await site.get(page, session)
    assert resp.status == 200
    return session, csrf_of(await resp.text())


async def rest_a_limit_order(site: Site, user: uuid.UUID) -> uuid.UUID:
    draft = OrderDraft("AAPL", Side.BUY, Decimal(2), OrderType.LIMIT, TimeInForce.GTC, limit_price=Decimal("150"))
    result = await site.desk.confirm(user, (await site.desk.propose(user, draft)).id)
    assert isinstance(result, Confirmed) and result.order.status == "new"
    return result.order.id


async def test_the_orders_page_cancels_only_the_users_own_order_with_the_csrf_token(site: Site) -> None:
    await site.buy(site.alice, "MSFT", "1")
    order_id = await rest_a_limit_order(site, site.alice)
    alice, csrf = await signed_in(site, site.alice, "/orders")
    bob, bob_csrf = await signed_in(site, site.bob, "/orders")

    page = await (await site.get("/orders", alice)).text()
    [open_row, done_row] = rows(page, "orders")
    assert open_row[:3] == ["BUY 2 AAPL limit 150 (GTC)", "new", "0"]
    assert done_row[:3] == ["BUY 1 MSFT market (DAY)", "filled", "1"]
    assert f'formaction="/orders/{order_id}/cancel"' in page
    assert rows(await (await site.get("/orders", bob)).text(), "orders") == []

    cancel = f"/orders/{order_id}/cancel"
    assert (await site.post(cancel, alice)).status == 403  # no token
    assert (await site.post(cancel, alice, {"csrf": bob_csrf})).status == 403  # another session's token
    assert (await site.post(cancel, alice, {"csrf": csrf}, Origin="https://evil.example")).status == 403
    assert (await site.post(cancel, bob, {"csrf": bob_csrf})).status == 404  # alice's order: not bob's to see
    guessed = await site.post(f"/orders/{uuid.uuid4()}/cancel", alice, {"csrf": csrf})
    malformed = await site.post("/orders/not-an-id/cancel", alice, {"csrf": csrf})
    assert guessed.status == malformed.status == 404
    assert await guessed.text() == await (await site.post(cancel, bob, {"csrf": bob_csrf})).text()
    assert [o.status for o in await site.desk.orders(site.alice, "open")] == ["new"]

    done = await site.post(cancel, alice, {"csrf": csrf})
    assert done.status == 303 and done.headers["Location"] == f"/orders?canceled={order_id.hex[:8]}"
    after = await (await site.get(done.headers["Location"], alice)).text()
    assert f"Order {order_id.hex[:8]} canceled." in after
    assert sorted(r[1] for r in rows(after, "orders")) == ["canceled", "filled"]
    assert await site.desk.orders(site.alice, "open") == []
    again = await site.post(cancel, alice, {"csrf": csrf})
    assert again.status == 409 and "canceled" in await again.text()


async def test_the_alerts_page_escapes_what_users_typed_and_deletes_only_their_own(site: Site) -> None:
    note = '<script>alert("x")</script> & more'
    alert = await site.desk.add_alert(site.alice, "AAPL", "above", Decimal("250"), note=note)
    alice, csrf = await signed_in(site, site.alice, "/alerts")
    bob, bob_csrf = await signed_in(site, site.bob, "/alerts")

    page = await (await site.get("/alerts", alice)).text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; more" in page
    [row] = rows(page, "alerts")
    assert row[0] == "AAPL above 250" and row[2] == note
    assert rows(await (await site.get("/alerts", bob)).text(), "alerts") == []

    delete = f"/alerts/{alert.id}/delete"
    assert (await site.post(delete, alice)).status == 403
    assert (await site.post(delete, bob, {"csrf": bob_csrf})).status == 404
    assert [a.id for a in await site.desk.alerts(site.alice)] == [alert.id]
    done = await site.post(delete, alice, {"csrf": csrf})
    assert done.status == 303
    after = await (await site.get(done.headers["Location"], alice)).text()
    assert f"Alert {alert.id.hex[:8]} deleted." in after and "No active alerts." in after
    assert await site.desk.alerts(site.alice) == []


async def test_the_inbox_shows_the_users_notifications_and_marks_them_read(site: Site) -> None:
    async with site.db.system_scope("test.enqueue") as s:
        await enqueue(s, site.alice, "alert", "a1", "AAPL above $210", "AAPL traded at $210.50.")
        await enqueue(s, site.alice, "fill", "f1", "Order filled", "Bought 1 AAPL at $200.00.")
        await enqueue(s, site.bob, "alert", "b1", "MSFT below $300", "Bob's alert.")
    alice, csrf = await signed_in(site, site.alice, "/inbox")
    bob, _ = await signed_in(site, site.bob, "/inbox")

    page = await (await site.get("/inbox", alice)).text()
    assert "2 unread" in page and "Order filled" in page and "AAPL above $210" in page
    assert page.index("Order filled") < page.index("AAPL above $210")  # newest first
    assert "waiting to be sent" in page and "Bob" not in page
    assert "Bob's alert." in text(await (await site.get("/inbox", bob)).text(), "inbox")

    assert (await site.post("/inbox/read", alice)).status == 403
    done = await site.post("/inbox/read", alice, {"csrf": csrf})
    assert done.status == 303
    after = await (await site.get(done.headers["Location"], alice)).text()
    assert "All notifications marked read." in after and "unread" not in text(after, "inbox")
    assert (await site.desk.inbox(site.bob)).unread == 1  # bob's are untouched


async def test_the_plan_page_upgrades_through_checkout(site: Site) -> None:
    alice, csrf = await signed_in(site, site.alice, "/plan")
    page = await (await site.get("/plan", alice)).text()
    assert "Plan: Free" in page and "up to 10" in page and "Billing isn't available" in page
    unavailable = await site.post("/plan/upgrade", alice, {"csrf": csrf})
    assert unavailable.status == 400 and "Billing is not available" in await unavailable.text()

    base = "http://127.0.0.1:8080"
    site.desk.billing = BillingSimulator(
        site.db, public_url=base, webhook_url=f"{base}/stripe/webhook", webhook_secret="whsec_x", price_pro="price_p"
    )
    site.desk.config = replace(site.desk.config, public_url=base)
    page = await (await site.get("/plan", alice)).text()
    assert "Upgrade to Pro" in page and "offline Stripe simulator" in page and "Manage billing" not in page
    assert (await site.post("/plan/upgrade", alice)).status == 403
    checkout = await site.post("/plan/upgrade", alice, {"csrf": csrf})
    assert checkout.status == 303 and checkout.headers["Location"].startswith(f"{base}/billing/simulator/checkout/")
    portal = await site.post("/plan/portal", alice, {"csrf": csrf})
    assert portal.status == 404 and "no subscription to manage" in await portal.text()


async def test_charts_are_png_images_of_the_users_own_data(site: Site) -> None:
    await site.buy(site.alice, "AAPL", "1")
    alice, _ = await signed_in(site, site.alice)
    for path in ("/charts/equity.png", "/charts/equity.png?period=1w", "/charts/price/AAPL.png?period=1d"):
        resp = await site.get(path, alice)
        assert resp.status == 200 and resp.content_type == "image/png"
        assert (await resp.read()).startswith(b"\x89PNG\r\n\x1a\n")
    bad = await site.get("/charts/equity.png?period=10y", alice)
    assert bad.status == 400 and "Unknown chart period" in await bad.text()
    assert (await site.get("/charts/price/NOPE.png", alice)).status in (400, 404)
    assert (await site.get("/charts/equity.png")).status == 401
    positions = await (await site.get("/positions", alice)).text()
    assert 'src="/charts/price/AAPL.png?period=1d"' in positions and rows(positions, "positions")[0][0] == "AAPL"


async def test_the_chat_box_proposes_and_only_the_owners_confirm_places_one_order(site: Site) -> None:
    alice, csrf = await signed_in(site, site.alice)
    bob, bob_csrf = await signed_in(site, site.bob)

    assert (await site.post("/chat", alice, {"message": "buy 1 AAPL"}, **JSON)).status == 403
    empty = await site.post("/chat", alice, {"csrf": csrf, "message": "  "}, **JSON)
    assert empty.status == 400 and json.loads(await empty.text()) == {"error": "Type a message first."}

    asked = await site.post("/chat", alice, {"csrf": csrf, "message": "buy 1 AAPL"}, **JSON)
    assert asked.status == 200
    html = (await asked.json())["html"]
    match = re.search(r'<li class="proposal" data-proposal="([0-9a-f-]{36})">', html)
    assert match is not None and '<li class="you"><span class="who">You</span> buy 1 AAPL</li>' in html
    assert ">Confirm</button>" in html and ">Cancel</button>" in html
    proposal = match.group(1)
    assert await site.desk.orders(site.alice, "all") == []  # a proposal trades nothing

    confirm = f"/proposals/{proposal}/confirm"
    assert (await site.post(confirm, alice, {}, **JSON)).status == 403
    stolen = await site.post(confirm, bob, {"csrf": bob_csrf}, **JSON)
    assert stolen.status == 404 and await site.desk.orders(site.bob, "all") == []
    assert (await site.post(f"/proposals/{uuid.uuid4()}/confirm", alice, {"csrf": csrf}, **JSON)).status == 404

    for _ in range(2):  # a double click: one order
        done = await site.post(confirm, alice, {"csrf": csrf}, **JSON)
        assert done.status == 200
        outcome = (await done.json())["html"]
        assert re.search(r'<p class="outcome" role="status">Bought 1 AAPL at 200\.\d+\.', outcome)
        assert ">Confirm</button>" not in outcome
    [order] = await site.desk.orders(site.alice, "all")
    assert order.status == "filled" and order.qty == 1
    page = await (await site.get("/", alice)).text()
    assert rows(page, "positions")[0][:2] == ["AAPL", "1"]


async def test_the_chat_box_works_without_script_and_cancel_drops_the_proposal(site: Site) -> None:
    alice, csrf = await signed_in(site, site.alice)
    page = await (await site.post("/chat", alice, {"csrf": csrf, "message": "buy 2 msft"})).text()
    log = section(page, "chat-log")
    assert "buy 2 msft" in "".join(log.text)
    proposal = re.search(r'data-proposal="([0-9a-f-]{36})"', page)
    assert proposal is not None and f'action="/proposals/{proposal.group(1)}/confirm"' in page
    assert 'id="summary"' in page  # the whole overview came back

    dropped = await site.post(f"/proposals/{proposal.group(1)}/cancel", alice, {"csrf": csrf})
    assert dropped.status == 200 and "Dropped; nothing was placed." in await dropped.text()
    late = await site.post(f"/proposals/{proposal.group(1)}/confirm", alice, {"csrf": csrf}, **JSON)
    assert late.status == 409 and "canceled" in (await late.json())["error"]
    assert await site.desk.orders(site.alice, "all") == []


async def test_the_live_fragments_are_the_pages_own_and_the_users_own(site: Site) -> None:
    await site.buy(site.alice, "AAPL", "4")
    await site.buy(site.bob, "TSLA", "1")
    alice, _ = await signed_in(site, site.alice)
    render = topic_renderer(site.desk)
    fragments = await render(site.alice, frozenset({"portfolio", "orders", "alerts", "inbox", "plan"}))
    assert set(fragments) == {"summary", "positions", "orders", "alerts", "inbox", "plan"}
    page = await (await site.get("/", alice)).text()
    assert fragments["positions"] in page and fragments["summary"] in page
    assert "TSLA" not in "".join(fragments.values())
    assert all('name="csrf"' not in html for html in fragments.values())  # the hub renders without a session
    assert rows(fragments["positions"], "positions")[0][:2] == ["AAPL", "4"]


async def test_billing_return_pages_and_unknown_pages(site: Site) -> None:
    for path, words in (("/billing/success", "Pro turns on"), ("/billing/cancel", "nothing was charged")):
        resp = await site.get(path)
        assert resp.status == 200 and words in await resp.text()
        assert "Content-Security-Policy" in resp.headers
    async with site.db.system_scope("test.read") as s:
        assert await (await raw_connection(s)).fetchval("SELECT count(*) FROM web_sessions") == 0
