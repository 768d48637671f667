"""Core services built from Settings, shared by every role of the process (one place, one configuration)."""

from __future__ import annotations

from datetime import timedelta

from openai import AsyncOpenAI

from core.config import Settings
from core.db.database import Database
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tools.agent import Agent, AgentConfig, Trace
from tools.desk import Desk, DeskConfig
from tools.planner import run_planner


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


def build_agent(settings: Settings, *, channel: str, trace: Trace | None = None) -> Agent:
    """The agent on the configured model, or on the offline planner when OPENAI_API_KEY is unset."""
    client = None
    if settings.openai_api_key is not None:
        # Retries are the agent's own (one, on transient errors), so the client makes none of its own.
        client = AsyncOpenAI(
            api_key=settings.openai_api_key.get_secret_value(), base_url=settings.openai_base_url, max_retries=0
        )
    return Agent(client, AgentConfig(model=settings.openai_model, channel=channel), planner=run_planner, trace=trace)
