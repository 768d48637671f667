from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel import Field, SQLModel

from core.db.types import BIGINT, JSON, TEXT, TIMESTAMP, JsonObject, utcnow


class BillingCustomer(SQLModel, table=True):
    __tablename__ = "billing_customers"

    user_id: UUID = Field(primary_key=True)
    stripe_customer_id: str = Field(sa_type=TEXT)
    livemode: bool = False
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class Subscription(SQLModel, table=True):
    __tablename__ = "subscriptions"

    id: str = Field(primary_key=True, sa_type=TEXT)
    user_id: UUID
    stripe_customer_id: str = Field(sa_type=TEXT)
    plan: str = Field(sa_type=TEXT)
    status: str = Field(sa_type=TEXT)
    price_id: str | None = Field(default=None, sa_type=TEXT)
    current_period_end: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    trial_end: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    cancel_at_period_end: bool = False
    canceled_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    ended_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    synced_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    past_due_since: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class UsageEvent(SQLModel, table=True):
    __tablename__ = "usage_events"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    user_id: UUID
    kind: str = Field(sa_type=TEXT)
    quantity: int = 1
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    reported_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    model: str | None = Field(default=None, sa_type=TEXT)
    prompt_tokens: int = 0
    completion_tokens: int = 0


class StripeEvent(SQLModel, table=True):
    __tablename__ = "stripe_events"

    id: str = Field(primary_key=True, sa_type=TEXT)
    type: str = Field(sa_type=TEXT)
    created: datetime = Field(sa_type=TIMESTAMP)
    livemode: bool
    processed_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    status: str = Field(default="applied", sa_type=TEXT)
    customer_id: str | None = Field(default=None, sa_type=TEXT)
    payload: JsonObject | None = Field(default=None, sa_type=JSON)
