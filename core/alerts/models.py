from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from core.db.types import PERCENT, PRICE, TEXT, TIMESTAMP, utcnow


class Alert(SQLModel, table=True):
    __tablename__ = "alerts"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    symbol: str = Field(sa_type=TEXT)
    direction: str = Field(sa_type=TEXT)
    kind: str = Field(sa_type=TEXT)
    threshold: Decimal = Field(sa_type=PRICE)
    reference_price: Decimal | None = Field(default=None, sa_type=PRICE)
    percent: Decimal | None = Field(default=None, sa_type=PERCENT)
    checked_price: Decimal | None = Field(default=None, sa_type=PRICE)  # the price the create checked against
    recurring: bool = False
    cooldown_seconds: int = 0
    expires_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    note: str | None = Field(default=None, sa_type=TEXT)
    status: str = Field(default="active", sa_type=TEXT)
    rearm_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    trigger_count: int = 0
    last_triggered_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    last_trigger_price: Decimal | None = Field(default=None, sa_type=PRICE)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
