"""Core services built from Settings, shared by every role of the process (one place, one configuration)."""

from __future__ import annotations

from datetime import timedelta

from core.config import Settings
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker


def market_hours(settings: Settings) -> MarketHours:
    # The sim exchange trades around the clock so that a demo works at any hour; real providers keep real hours.
    return MarketHours(always_open=settings.market_provider == "sim")


def broker_costs(settings: Settings) -> BrokerCosts:
    return BrokerCosts(
        fee_bps=settings.paper_fee_bps,
        slippage_bps=settings.paper_slippage_bps,
        stale_after=timedelta(seconds=settings.market_stale_after_s),
    )


def paper_broker(settings: Settings) -> PaperBroker:
    return PaperBroker(market_hours(settings), broker_costs(settings))
