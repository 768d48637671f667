from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel import Field, SQLModel

from core.db.types import BIGINT, JSON, TEXT, TIMESTAMP, JsonObject, utcnow


class Notification(SQLModel, table=True):
    __tablename__ = "notifications"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    user_id: UUID
    kind: str = Field(sa_type=TEXT)
    dedupe_key: str = Field(sa_type=TEXT)
    title: str = Field(sa_type=TEXT)
    body: str = Field(sa_type=TEXT)
    payload: JsonObject = Field(default_factory=dict, sa_type=JSON)
    alert_id: UUID | None = None
    status: str = Field(default="pending", sa_type=TEXT)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    last_error: str | None = Field(default=None, sa_type=TEXT)
    coalesced_into: int | None = Field(default=None, sa_type=BIGINT)
    discord_message_id: int | None = Field(default=None, sa_type=BIGINT)
    group_id: int | None = Field(default=None, sa_type=BIGINT)  # the coalesced burst (its leader's id, the nonce)
    lease_token: UUID | None = None  # the claim that holds the row; only it may record the outcome
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    sent_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    read_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)
