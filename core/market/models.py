from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlmodel import Field, SQLModel

from core.db.types import JSON, PRICE, QUANTITY, TEXT, TIMESTAMP, JsonObject, utcnow


class Instrument(SQLModel, table=True):
    __tablename__ = "instruments"

    symbol: str = Field(primary_key=True, sa_type=TEXT)
    name: str = Field(sa_type=TEXT)
    asset_class: str = Field(sa_type=TEXT)
    quote_currency: str = Field(sa_type=TEXT)
    tick_size: Decimal = Field(sa_type=PRICE)
    lot_size: Decimal = Field(sa_type=QUANTITY)
    trading_session: str = Field(sa_type=TEXT)
    provider_symbols: JsonObject = Field(default_factory=dict, sa_type=JSON)
    active: bool = True


class LastPrice(SQLModel, table=True):
    __tablename__ = "last_prices"

    symbol: str = Field(primary_key=True, sa_type=TEXT)
    price: Decimal = Field(sa_type=PRICE)
    bid: Decimal | None = Field(default=None, sa_type=PRICE)
    ask: Decimal | None = Field(default=None, sa_type=PRICE)
    size: Decimal | None = Field(default=None, sa_type=QUANTITY)
    ts: datetime = Field(sa_type=TIMESTAMP)
    source: str = Field(sa_type=TEXT)
    received_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class PriceBar(SQLModel, table=True):
    __tablename__ = "price_bars"

    symbol: str = Field(primary_key=True, sa_type=TEXT)
    minute: datetime = Field(primary_key=True, sa_type=TIMESTAMP)
    open: Decimal = Field(sa_type=PRICE)
    high: Decimal = Field(sa_type=PRICE)
    low: Decimal = Field(sa_type=PRICE)
    close: Decimal = Field(sa_type=PRICE)
    volume: Decimal = Field(default=Decimal(0), sa_type=QUANTITY)
    tick_count: int = 0
    source: str = Field(sa_type=TEXT)
