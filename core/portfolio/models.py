from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from core.db.types import BIGINT, MONEY, PRICE, QUANTITY, TEXT, TIMESTAMP, utcnow


class Portfolio(SQLModel, table=True):
    __tablename__ = "portfolios"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    name: str = Field(sa_type=TEXT)
    currency: str = Field(default="USD", sa_type=TEXT)
    cash: Decimal = Field(default=Decimal(0), sa_type=MONEY)
    is_default: bool = False
    allow_short: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    archived_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class CashLedgerEntry(SQLModel, table=True):
    __tablename__ = "cash_ledger"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    user_id: UUID
    portfolio_id: UUID
    amount: Decimal = Field(sa_type=MONEY)
    kind: str = Field(sa_type=TEXT)
    fill_id: UUID | None = None
    note: str | None = Field(default=None, sa_type=TEXT)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class Position(SQLModel, table=True):
    __tablename__ = "positions"

    user_id: UUID
    portfolio_id: UUID = Field(primary_key=True)
    symbol: str = Field(primary_key=True, sa_type=TEXT)
    qty: Decimal = Field(sa_type=QUANTITY)
    avg_cost: Decimal = Field(sa_type=PRICE)
    cost_basis: Decimal = Field(default=Decimal(0), sa_type=MONEY)
    realized_pnl: Decimal = Field(default=Decimal(0), sa_type=MONEY)
    opened_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class EquitySnapshot(SQLModel, table=True):
    __tablename__ = "equity_snapshots"

    user_id: UUID
    portfolio_id: UUID = Field(primary_key=True)
    ts: datetime = Field(primary_key=True, sa_type=TIMESTAMP)
    equity: Decimal = Field(sa_type=MONEY)
    cash: Decimal = Field(sa_type=MONEY)
    positions_value: Decimal = Field(sa_type=MONEY)
    realized_pnl: Decimal = Field(sa_type=MONEY)
    unrealized_pnl: Decimal = Field(sa_type=MONEY)
