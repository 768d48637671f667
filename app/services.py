"""Core services built from Settings, shared by every role of the process (one place, one configuration)."""

from __future__ import annotations

import secrets
from datetime import timedelta

from openai import AsyncOpenAI

from core.billing.gateway import BillingGateway
from core.config import Settings
from core.db.database import Database
from core.db.state import get_state, put_state
from core.errors import SetupError
from core.market.quotes import DbQuoteSource
from core.market.sessions import MarketHours
from core.orders.paper import BrokerCosts, PaperBroker
from tools.agent import Agent, AgentConfig, Trace
from tools.desk import Desk, DeskConfig
from tools.planner import run_planner
from webhooks.billing_sim import BillingSimulator


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


def desk(settings: Settings, database: Database, billing: BillingGateway | None = None) -> Desk:
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
            public_url=settings.public_url,
            trial_days=settings.trial_days,
        ),
        billing=billing,
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


SIMULATOR_STATE = "billing.simulator.signing"  # the app_state key holding its webhook secret


async def webhook_secret(settings: Settings, database: Database) -> str:
    """STRIPE_WEBHOOK_SECRET, or the simulator's own secret: made once per deployment and kept in app_state, so every
    process signs and verifies the simulated events (and the simulator's links) with the same one."""
    if settings.stripe_secret_key is not None:
        if settings.stripe_webhook_secret is None:
            raise SetupError(
                "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: copy it from the webhook endpoint"
            )
        return settings.stripe_webhook_secret.get_secret_value()
    async with database.system_scope("billing.simulator") as s:
        # Insert-if-absent, then read: two processes starting at once end up with the one secret that won.
        await put_state(s, SIMULATOR_STATE, {"secret": "whsec_sim_" + secrets.token_hex(24)}, replace=False)
        found = await get_state(s, SIMULATOR_STATE)
    assert found is not None
    return str(found["secret"])


def billing_gateway(settings: Settings, database: Database, secret: str) -> BillingGateway:
    """Stripe when STRIPE_SECRET_KEY is set, else the offline simulator (which then posts to this web app)."""
    if settings.stripe_secret_key is not None:
        from app.stripe_gateway import StripeGateway

        if settings.stripe_price_pro is None:
            raise SetupError("STRIPE_SECRET_KEY is set but STRIPE_PRICE_PRO is not: set the Pro price's id (price_...)")
        if settings.stripe_price_pro_metered is not None and settings.stripe_meter_event is None:
            raise SetupError(
                "STRIPE_PRICE_PRO_METERED is set but STRIPE_METER_EVENT is not: set the meter's event name, "
                "or the overage could never be reported"
            )
        return StripeGateway(
            settings.stripe_secret_key.get_secret_value(),
            price_pro=settings.stripe_price_pro,
            price_pro_metered=settings.stripe_price_pro_metered,
            meter_event=settings.stripe_meter_event,
        )
    return BillingSimulator(
        database,
        public_url=settings.public_url,
        # This process's own web app, by loopback: the bind address may be 0.0.0.0 or ::, not a place to connect to.
        webhook_url=f"http://127.0.0.1:{settings.web_port}/stripe/webhook",
        webhook_secret=secret,
        price_pro=settings.stripe_price_pro or "price_simulated_pro",
    )
