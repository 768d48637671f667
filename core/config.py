"""The one Settings object, built once by the composition root (app/) and passed down.

Nothing here reads the environment at import time: `Settings()` does, when app/ calls it. Well-known variables keep
their usual names (DATABASE_URL, DISCORD_TOKEN, OPENAI_API_KEY, ...); TradeDesk's own carry a TRADEDESK_ prefix.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MarketProvider = Literal["sim", "binance", "coinbase", "alpaca", "finnhub"]


def default_data_dir() -> Path:
    """The platform's user data dir; /var/lib/tradedesk as root.

    Root's home is avoided on purpose: the embedded Postgres runs as a separate OS user when started by root and
    opens up (chmod 0755) every parent folder of its data dir.
    """
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/tradedesk")
    return platformdirs.user_data_path("tradedesk")


def _env(name: str) -> AliasChoices:
    return AliasChoices(name, name.lower())


class Settings(BaseSettings):
    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    database_url: SecretStr | None = Field(default=None, validation_alias=_env("DATABASE_URL"))
    data_dir: Path = Field(default_factory=default_data_dir, validation_alias=_env("TRADEDESK_DATA_DIR"))

    discord_token: SecretStr | None = Field(default=None, validation_alias=_env("DISCORD_TOKEN"))
    # Discord's REST base and gateway, for a REST proxy shared by several bot processes (or a local test server).
    discord_api_url: str | None = Field(default=None, validation_alias=_env("TRADEDESK_DISCORD_API_URL"))
    discord_gateway_url: str | None = Field(default=None, validation_alias=_env("TRADEDESK_DISCORD_GATEWAY_URL"))
    # Order proposals: how long Confirm works (Discord lets an ephemeral message be edited for 15 minutes), and how far
    # a market order's price may move between the proposal and the click before the user is asked again.
    # Pro's free trial for first-time subscribers, in days (0: none).
    trial_days: int = Field(default=7, ge=0, le=730, validation_alias=_env("TRADEDESK_TRIAL_DAYS"))
    proposal_ttl_s: int = Field(default=600, ge=30, le=840, validation_alias=_env("TRADEDESK_PROPOSAL_TTL_S"))
    proposal_max_drift_bps: Decimal = Field(
        default=Decimal(100), ge=0, le=5000, validation_alias=_env("TRADEDESK_PROPOSAL_MAX_DRIFT_BPS")
    )

    openai_api_key: SecretStr | None = Field(default=None, validation_alias=_env("OPENAI_API_KEY"))
    openai_base_url: str | None = Field(default=None, validation_alias=_env("OPENAI_BASE_URL"))
    openai_model: str = Field(default="gpt-4o-mini", validation_alias=_env("OPENAI_MODEL"))

    stripe_secret_key: SecretStr | None = Field(default=None, validation_alias=_env("STRIPE_SECRET_KEY"))
    stripe_webhook_secret: SecretStr | None = Field(default=None, validation_alias=_env("STRIPE_WEBHOOK_SECRET"))
    stripe_price_pro: str | None = Field(default=None, validation_alias=_env("STRIPE_PRICE_PRO"))
    stripe_price_pro_metered: str | None = Field(default=None, validation_alias=_env("STRIPE_PRICE_PRO_METERED"))
    stripe_meter_event: str | None = Field(default=None, validation_alias=_env("STRIPE_METER_EVENT"))

    market_provider: MarketProvider = Field(default="sim", validation_alias=_env("TRADEDESK_MARKET_PROVIDER"))
    market_url: str | None = Field(default=None, validation_alias=_env("TRADEDESK_MARKET_URL"))
    market_key: SecretStr | None = Field(default=None, validation_alias=_env("TRADEDESK_MARKET_KEY"))
    market_secret: SecretStr | None = Field(default=None, validation_alias=_env("TRADEDESK_MARKET_SECRET"))

    # Market data: a symbol with no tick for this long is stale (its quote isn't used for market orders).
    market_stale_after_s: float = Field(default=30.0, gt=0, validation_alias=_env("TRADEDESK_MARKET_STALE_AFTER_S"))
    # The sim provider: a local websocket server on this port (0: any free port), seeded for reproducible walks.
    sim_port: int = Field(default=0, ge=0, le=65535, validation_alias=_env("TRADEDESK_SIM_PORT"))
    sim_seed: int = Field(default=20261125, validation_alias=_env("TRADEDESK_SIM_SEED"))
    sim_ticks_per_s: float = Field(default=20.0, gt=0, le=100_000, validation_alias=_env("TRADEDESK_SIM_TICKS_PER_S"))

    # The paper broker.
    paper_starting_cash: Decimal = Field(
        default=Decimal("100000"),
        ge=0,
        max_digits=24,
        decimal_places=4,
        validation_alias=_env("TRADEDESK_PAPER_STARTING_CASH"),
    )
    paper_fee_bps: Decimal = Field(default=Decimal(0), ge=0, le=1000, validation_alias=_env("TRADEDESK_PAPER_FEE_BPS"))
    paper_slippage_bps: Decimal = Field(
        default=Decimal(1), ge=0, le=1000, validation_alias=_env("TRADEDESK_PAPER_SLIPPAGE_BPS")
    )
    allow_short: bool = Field(default=False, validation_alias=_env("TRADEDESK_ALLOW_SHORT"))

    web_host: str = Field(default="127.0.0.1", validation_alias=_env("TRADEDESK_WEB_HOST"))
    web_port: int = Field(default=8080, ge=0, le=65535, validation_alias=_env("TRADEDESK_WEB_PORT"))
    public_url: str = Field(default="http://127.0.0.1:8080", validation_alias=_env("TRADEDESK_PUBLIC_URL"))

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_env("TRADEDESK_LOG_LEVEL")
    )

    @field_validator("database_url", "discord_token", "openai_api_key", "stripe_secret_key", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # `DATABASE_URL= make run` means "unset", not "connect to an empty URL".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @property
    def embedded_db(self) -> bool:
        return self.database_url is None

    @property
    def pg_data_dir(self) -> Path:
        return self.data_dir / "pg"
