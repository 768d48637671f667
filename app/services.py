"""Core services built from Settings, shared by every role of the process (one place, one configuration)."""

from __future__ import annotations

from datetime import timedelta

from core.config import Settings
from core.db.database import Database
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tools.desk import Desk, DeskConfig


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


def desk(settings: Settings, database: Database) -> Desk:
    """The facade every front uses; prices come from last_prices (any role, any process)."""
    return Desk(
        database,
        DbQuoteSource(database, settings.market_stale_after_s),
        paper_broker(settings),
        DeskConfig(
            starting_cash=settings.paper_starting_cash,
            stale_after=timedelta(seconds=settings.market_stale_after_s),
            proposal_ttl=timedelta(seconds=settings.proposal_ttl_s),
            max_drift_bps=settings.proposal_max_drift_bps,
        ),
    )
