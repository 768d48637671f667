from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from core.db.types import MONEY, PRICE, QUANTITY, TEXT, TIMESTAMP, utcnow


class OrderView(SQLModel):
    """An order as the broker returns it: every column, without the ORM's per-attribute instrumentation.

    The table model below inherits these fields; the view is what the hot path builds from a row.
    """

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    portfolio_id: UUID
    client_order_id: str = Field(sa_type=TEXT)
    proposal_id: UUID | None = None
    symbol: str = Field(sa_type=TEXT)
    side: str = Field(sa_type=TEXT)
    type: str = Field(sa_type=TEXT)
    tif: str = Field(sa_type=TEXT)
    qty: Decimal = Field(sa_type=QUANTITY)
    limit_price: Decimal | None = Field(default=None, sa_type=PRICE)
    stop_price: Decimal | None = Field(default=None, sa_type=PRICE)
    status: str = Field(default="new", sa_type=TEXT)
    filled_qty: Decimal = Field(default=Decimal(0), sa_type=QUANTITY)
    avg_fill_price: Decimal | None = Field(default=None, sa_type=PRICE)
    quote_price: Decimal | None = Field(default=None, sa_type=PRICE)
    reject_reason: str | None = Field(default=None, sa_type=TEXT)
    expires_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    canceled_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    filled_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    triggered_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class Order(OrderView, table=True):
    __tablename__ = "orders"


class OrderProposal(SQLModel, table=True):
    __tablename__ = "order_proposals"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    portfolio_id: UUID
    action: str = Field(sa_type=TEXT)
    target_order_id: UUID | None = None
    symbol: str | None = Field(default=None, sa_type=TEXT)
    side: str | None = Field(default=None, sa_type=TEXT)
    type: str | None = Field(default=None, sa_type=TEXT)
    tif: str | None = Field(default=None, sa_type=TEXT)
    qty: Decimal | None = Field(default=None, sa_type=QUANTITY)
    limit_price: Decimal | None = Field(default=None, sa_type=PRICE)
    stop_price: Decimal | None = Field(default=None, sa_type=PRICE)
    quote_price: Decimal | None = Field(default=None, sa_type=PRICE)
    quote_ts: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    origin: str = Field(sa_type=TEXT)
    status: str = Field(default="pending", sa_type=TEXT)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)
    decided_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class Fill(SQLModel, table=True):
    __tablename__ = "fills"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    order_id: UUID
    portfolio_id: UUID
    seq: int
    symbol: str = Field(sa_type=TEXT)
    side: str = Field(sa_type=TEXT)
    qty: Decimal = Field(sa_type=QUANTITY)
    price: Decimal = Field(sa_type=PRICE)
    gross: Decimal = Field(sa_type=MONEY)
    fee: Decimal = Field(default=Decimal(0), sa_type=MONEY)
    executed_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
