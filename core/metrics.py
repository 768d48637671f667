"""Every Prometheus metric TradeDesk exports, defined once, in TradeDesk's own registry (not the client's global one).

Each is incremented at the one place its event happens (the feed, the alert engine, the matcher, the dispatcher, the
Stripe webhook, run_tool, the agent, the bot's command tree, the web app's middleware); `render()` is what GET
/metrics serves. Labels are bounded sets: a provider, a consumer, an outcome, a command, tool or route template,
a configured model. Never a user id, a raw path or a free-form value from outside (an unknown tool name or Stripe
event type becomes "other").

Hot paths count once per tick or per frame, never per alert or per order.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4, generate_latest

REGISTRY = CollectorRegistry(auto_describe=True)
# The classic text format every Prometheus scrapes (names here are plain, so nothing needs the 1.0.0 escaping).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4  # text/plain; version=0.0.4; charset=utf-8

# Interactive latencies: a command or a tool call answers in milliseconds to seconds (the agent's tools, a model).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# -- market feed (worker) -----------------------------------------------------------------------------------------

FEED_TICKS_RECEIVED = Counter(
    "tradedesk_feed_ticks_received",
    "Ticks the market feed received from its provider and published to the tick bus.",
    ["provider"],
    registry=REGISTRY,
)
FEED_CONNECTS = Counter(
    "tradedesk_feed_connects",
    "Successful websocket connections of the market feed (the first one and every reconnect).",
    ["provider"],
    registry=REGISTRY,
)
FEED_RECONNECTS = Counter(
    "tradedesk_feed_reconnects",
    "Times the market feed connected again after losing its connection.",
    ["provider"],
    registry=REGISTRY,
)
FEED_CONNECT_FAILURES = Counter(
    "tradedesk_feed_connect_failures",
    "Connection attempts of the market feed that failed (each is retried with backoff).",
    ["provider"],
    registry=REGISTRY,
)
FEED_CONNECTED = Gauge(
    "tradedesk_feed_connected",
    "1 while the market feed is connected to its provider, else 0.",
    ["provider"],
    registry=REGISTRY,
)
FEED_STALE_SYMBOLS = Gauge(
    "tradedesk_feed_stale_symbols",
    "Symbols of the feed with no tick within the staleness window (or none yet).",
    ["provider"],
    registry=REGISTRY,
)
FEED_SYMBOLS = Gauge(
    "tradedesk_feed_symbols",
    "Symbols the market feed subscribes to.",
    ["provider"],
    registry=REGISTRY,
)

# -- tick consumers (worker) --------------------------------------------------------------------------------------

TICKS_EVALUATED = Counter(
    "tradedesk_ticks_evaluated",
    "Ticks evaluated by a consumer of the tick bus: alerts (the alert engine) or matching (resting orders).",
    ["consumer"],
    registry=REGISTRY,
)
ALERTS_TRIGGERED = Counter(
    "tradedesk_alerts_triggered",
    "Alert triggers committed (the alert marked and its notification written in one transaction).",
    registry=REGISTRY,
)
ALERT_FIRE_FAILURES = Counter(
    "tradedesk_alert_fire_failures",
    "Alert trigger transactions that failed and were queued for a retry.",
    registry=REGISTRY,
)
ORDER_FILLS = Counter(
    "tradedesk_order_fills",
    "Resting paper orders filled by the matcher.",
    registry=REGISTRY,
)

# -- notifications (worker) ---------------------------------------------------------------------------------------

NOTIFICATIONS = Counter(
    "tradedesk_notifications",
    "Outbox notifications by dispatcher outcome: sent (coalesced ones included), retried (later, 429s included), "
    "failed (for good), parked (DMs closed), held (mute or quiet hours).",
    ["outcome"],
    registry=REGISTRY,
)
NOTIFICATION_MESSAGES_SENT = Counter(
    "tradedesk_notification_messages_sent",
    "Messages delivered by the dispatcher (a burst for one user is one message).",
    registry=REGISTRY,
)
NOTIFICATIONS_RATE_LIMITED = Counter(
    "tradedesk_notifications_rate_limited",
    "Deliveries the server asked to retry later (HTTP 429 with retry_after).",
    registry=REGISTRY,
)

# -- Stripe webhook (web) -----------------------------------------------------------------------------------------

WEBHOOK_EVENTS = Counter(
    "tradedesk_webhook_events",
    "Stripe webhook deliveries by event type (a handled type, else other) and outcome: applied, duplicate, "
    "ignored, unlinked, invalid (bad signature or body: 400), unavailable (Stripe unreadable: 503), failed (500).",
    ["type", "outcome"],
    registry=REGISTRY,
)

# -- bot, tools, model --------------------------------------------------------------------------------------------

COMMAND_LATENCY = Histogram(
    "tradedesk_command_duration_seconds",
    "Discord slash command handling time, from the tree's check to completion or error, by command and outcome.",
    ["command", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TOOL_LATENCY = Histogram(
    "tradedesk_tool_duration_seconds",
    "Agent tool call time (validation and handler), by tool (unknown names: other) and outcome (ok or error).",
    ["tool", "outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_CALLS = Counter(
    "tradedesk_model_calls",
    "Chat Completions requests by model and outcome: ok, retried (a transient error, tried again), error.",
    ["model", "outcome"],
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "tradedesk_model_tokens",
    "Tokens reported by the model's responses, by model and kind (prompt or completion).",
    ["model", "kind"],
    registry=REGISTRY,
)

# -- web app ------------------------------------------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "tradedesk_http_requests",
    "HTTP requests to the web app by method, route template (unmatched for a 404) and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "tradedesk_http_request_duration_seconds",
    "HTTP request handling time by method and route template.",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)


def render() -> bytes:
    """Every metric in the Prometheus text exposition format (CONTENT_TYPE)."""
    return generate_latest(REGISTRY)


def value(name: str, labels: dict[str, str] | None = None) -> float:
    """The current value of one sample (e.g. "tradedesk_alerts_triggered_total"), 0 when it doesn't exist yet."""
    found = REGISTRY.get_sample_value(name, labels or {})
    return found if found is not None else 0.0
