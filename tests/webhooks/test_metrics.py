"""GET /metrics on the real web app after a short scripted session, and the request id of every request.

The session runs the real pieces, each against its real counterpart: the market feed against a local websocket
provider speaking Binance's wire format (which drops the first connection), the tick bus into the alert engine on
the test database, the outbox dispatcher delivering the alert's DM to the console notifier, a Stripe event applied
and delivered again through the webhook, tool calls through run_tool, and one agent question against the local
fake of Chat Completions. /metrics is then scraped over HTTP and parsed with prometheus-client's own parser.

Metrics are per process and the suite shares one process, so every check is on the difference between a scrape
before and a scrape after.
"""

from __future__ import annotations

import io
import logging
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from openai import AsyncOpenAI
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import ServerConnection

from app.logs import OneLineFormatter
from app.stripe_gateway import StripeGateway
from bench.fake_openai import FakeOpenAI, text
from bench.fake_stripe import FakeStripe, event, signed
from core.alerts.engine import AlertEngine
from core.billing.gateway import CheckoutRequest
from core.config import Settings
from core.db.database import Database
from core.db.identity import resolve_identity
from core.logcontext import RequestIdFilter
from core.market.bus import TickBus
from core.market.ticks import Tick
from core.notifications.dispatcher import Dispatcher
from core.notifications.limiter import TokenBucket
from core.notifications.notifier import ConsoleNotifier
from tests.bot.conftest import PRICES, build_desk
from tests.core.market.test_feed import BTC, ETH, make_feed
from tests.core.market.wire import ScriptedProvider, until
from tests.helpers import Clock, stripe_gateway
from tests.tools.conftest import set_price
from tests.webhooks.test_stripe_webhook import PRO, SECRET, of_type
from tools.agent import Agent, AgentConfig
from tools.context import ToolContext
from tools.desk import Desk
from tools.registry import run_tool
from webhooks.app import create_app

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Site:
    client: TestClient[Any, Any]
    db: Database
    desk: Desk
    clock: Clock
    fake: FakeStripe
    gateway: StripeGateway


@pytest.fixture
async def site(db: Database, tmp_path: Path) -> AsyncIterator[Site]:
    clock = Clock(datetime.now(UTC).replace(microsecond=0))
    for symbol, price in PRICES.items():
        await set_price(db, clock, symbol, price)
    desk = build_desk(db, clock)
    async with FakeStripe() as fake:
        fake.add_price(PRO, unit_amount=2000)
        gateway = stripe_gateway(fake, PRO)
        app = create_app(
            Settings(data_dir=tmp_path / "data", web_port=0),
            database=db,
            version="test",
            billing=gateway,
            webhook_secret=SECRET,
            desk=desk,
        )
        try:
            async with TestClient(TestServer(app)) as client:
                yield Site(client, db, desk, clock, fake, gateway)
        finally:
            await gateway.close()


async def scrape(site: Site) -> Samples:
    resp = await site.client.get("/metrics")
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(await resp.text()):
        assert family.name.startswith("tradedesk_"), family.name  # our registry only, not the client's default
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    return after.get(key, 0.0) - before.get(key, 0.0)


async def feed_session(bus: TickBus) -> None:
    """Two trades per connection; the provider drops the first connection, so the feed reconnects once."""

    async def script(ws: ServerConnection, n: int) -> None:
        await ws.send(BTC)
        await ws.send(ETH)
        if n == 0:
            await ws.close(1001, "going away")

    async with ScriptedProvider(script) as provider:
        feed = make_feed(provider.url, bus.publish)
        feed.start()
        try:
            await until(lambda: provider.connections == 2 and feed.ticks == 4, what="a reconnect and four ticks")
        finally:
            await feed.stop()


async def test_metrics_hold_the_counters_of_a_short_scripted_session(site: Site) -> None:
    before = await scrape(site)
    alice = await resolve_identity(site.db, console_handle="alice")
    ctx = ToolContext(alice, site.desk)

    # Tools: an alert through the real tool, and a name no tool has.
    created = await run_tool(ctx, "create_alert", {"symbol": "AAPL", "condition": "above", "value": "210"})
    assert created.ok, created.result
    assert not (await run_tool(ctx, "no_such_tool", "{}")).ok

    # Ticks: the feed into the bus, then AAPL crossing the alert; the alert engine evaluates each one.
    engine = AlertEngine(site.db, clock=site.clock, retry_after_s=0, autostart=False)
    await engine.reload(site.clock())
    bus = TickBus()
    alerts = bus.subscribe("alerts", conflate=False)
    await feed_session(bus)
    for price in ("205", "211"):
        site.clock.advance(seconds=1)
        bus.publish(Tick("AAPL", Decimal(price), Decimal(1), site.clock(), "sim"))
    ticks = await alerts.get_many()
    assert len(ticks) == 6
    for tick in ticks:
        await engine.on_tick(tick)
    await engine.flush()
    assert engine.fired == 1

    # The alert's DM, delivered by the dispatcher to the console.
    console = io.StringIO()
    dispatcher = Dispatcher(
        site.db, ConsoleNotifier(console), TokenBucket(), clock=lambda: datetime.now(UTC) + timedelta(minutes=1)
    )
    assert (await dispatcher.dispatch_once()).notifications_sent == 1
    assert "AAPL above 210" in console.getvalue()

    # Stripe: a checkout's completion applied, then delivered again.
    payer = await resolve_identity(site.db, discord_id=777000222)
    link = await site.gateway.create_checkout(
        CheckoutRequest(
            user_id=payer,
            success_url="https://td.example/billing/success",
            cancel_url="https://td.example/billing/cancel",
            trial_days=None,
            email="trader@example.com",
        )
    )
    done = site.fake.complete_checkout(link.session_id)
    completed = of_type(done, "checkout.session.completed")
    for expected in ("applied", "duplicate"):
        body, headers = signed(completed, SECRET, int(time.time()))
        resp = await site.client.post("/stripe/webhook", data=body, headers=headers)
        assert (resp.status, (await resp.json())["status"]) == (200, expected)
    body, headers = signed(completed, "whsec_not_ours_0123456789", int(time.time()))
    assert (await site.client.post("/stripe/webhook", data=body, headers=headers)).status == 400

    # One question to the model, answered without tools.
    async with FakeOpenAI() as ai:
        ai.script(text("Hello! Ask me about your paper portfolio."))
        client = AsyncOpenAI(base_url=ai.base_url, api_key=ai.api_key, max_retries=0)
        agent = Agent(client, AgentConfig(model="gpt-metrics-test", call_timeout_s=5), planner=_no_planner)
        reply = await agent.ask(ctx, "hello")
        assert reply.model_calls == 1
        await client.close()

    # Web requests on routes with an id in the path, and one no route serves.
    order_id, alert_id = uuid.uuid4(), uuid.uuid4()
    await site.client.post(f"/orders/{order_id}/cancel", allow_redirects=False)
    await site.client.post(f"/alerts/{alert_id}/delete", allow_redirects=False)
    assert (await site.client.get(f"/no/such/{order_id}")).status == 404

    after = await scrape(site)

    def delta(name: str, **labels: str) -> float:
        return moved(before, after, name, **labels)

    assert delta("tradedesk_feed_ticks_received_total", provider="binance") == 4
    assert delta("tradedesk_feed_connects_total", provider="binance") == 2
    assert delta("tradedesk_feed_reconnects_total", provider="binance") == 1
    assert after[("tradedesk_feed_connected", frozenset({("provider", "binance")}))] == 0  # stopped
    assert ("tradedesk_feed_stale_symbols", frozenset({("provider", "binance")})) in after
    assert delta("tradedesk_ticks_evaluated_total", consumer="alerts") == 6
    assert delta("tradedesk_alerts_triggered_total") == 1
    assert delta("tradedesk_notifications_total", outcome="sent") == 1
    assert delta("tradedesk_notification_messages_sent_total") == 1
    assert delta("tradedesk_webhook_events_total", type="checkout.session.completed", outcome="applied") == 1
    assert delta("tradedesk_webhook_events_total", type="checkout.session.completed", outcome="duplicate") == 1
    assert delta("tradedesk_webhook_events_total", type="other", outcome="invalid") == 1
    assert delta("tradedesk_tool_duration_seconds_count", tool="create_alert", outcome="ok") == 1
    assert delta("tradedesk_tool_duration_seconds_count", tool="other", outcome="error") == 1
    assert delta("tradedesk_model_calls_total", model="gpt-metrics-test", outcome="ok") == 1
    assert delta("tradedesk_model_tokens_total", model="gpt-metrics-test", kind="prompt") > 0
    assert delta("tradedesk_model_tokens_total", model="gpt-metrics-test", kind="completion") > 0
    assert delta("tradedesk_http_requests_total", method="POST", route="/stripe/webhook", status="200") == 2
    assert delta("tradedesk_http_requests_total", method="POST", route="/stripe/webhook", status="400") == 1
    assert delta("tradedesk_http_request_duration_seconds_count", method="POST", route="/orders/{id}/cancel") == 1
    assert delta("tradedesk_http_request_duration_seconds_count", method="POST", route="/alerts/{id}/delete") == 1
    assert delta("tradedesk_http_requests_total", method="GET", route="unmatched", status="404") == 1
    assert delta("tradedesk_http_requests_total", method="GET", route="/metrics", status="200") == 1

    # Route templates only: no id from a path ever becomes a label value.
    routes = {dict(labels).get("route") for _, labels in after} - {None}
    assert "/orders/{id}/cancel" in routes and "unmatched" in routes
    assert not any(str(order_id) in r or str(alert_id) in r for r in routes if r), routes


async def _no_planner(ctx: ToolContext, question: str) -> Any:
    raise AssertionError("with a model configured, the offline planner is never used")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self.addFilter(RequestIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def stripe_log() -> Iterator[Records]:
    handler = Records()
    logger = logging.getLogger("tradedesk.webhooks.stripe")
    logger.addHandler(handler)
    level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


async def test_each_request_has_an_id_in_its_log_lines_and_its_response(site: Site, stripe_log: Records) -> None:
    # The caller's id (a reverse proxy's) when it is sane: echoed, and on every line logged for the request.
    body, headers = signed(_ignored_event(), SECRET, int(time.time()))
    resp = await site.client.post("/stripe/webhook", data=body, headers={**headers, "X-Request-Id": "edge-42.a:b"})
    assert resp.status == 200 and resp.headers["X-Request-Id"] == "edge-42.a:b"
    [record] = [r for r in stripe_log.records if "ignored" in r.getMessage()]
    assert getattr(record, "request_id", None) == "edge-42.a:b"
    line = OneLineFormatter().format(record)
    assert line.endswith(" req=edge-42.a:b") and "\n" not in line

    # Anything else is replaced by an id of ours; so is a missing one. Each request gets its own.
    ids = []
    for sent in ("x" * 101, "has space", "", None):
        resp = await site.client.get("/healthz", headers={"X-Request-Id": sent} if sent is not None else {})
        rid = resp.headers["X-Request-Id"]
        assert rid != sent and len(rid) == 16 and all(c in "0123456789abcdef" for c in rid)
        ids.append(rid)
    assert len(set(ids)) == len(ids)

    # Refusals (an HTTPException raised through the middleware) and 404s carry it too.
    resp = await site.client.get("/no/such/page")
    assert resp.status == 404 and len(resp.headers["X-Request-Id"]) == 16


def _ignored_event() -> dict[str, Any]:
    return event("customer.created", {"id": "cus_metrics_test", "object": "customer"})


def test_the_formatter_keeps_a_record_with_a_traceback_on_one_line() -> None:
    try:
        raise ValueError("two\nlines")
    except ValueError:
        record = logging.LogRecord("tradedesk.test", logging.ERROR, __file__, 1, "failed:\n%s", ("detail",), None)
        record.exc_info = sys.exc_info()
    line = OneLineFormatter().format(record)
    assert "\n" not in line and "failed:\\ndetail" in line and "ValueError: two\\nlines" in line
    assert " req=" not in line  # no request in progress
