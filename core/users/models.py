from __future__ import annotations

from datetime import datetime, time
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from core.db.types import BIGINT, JSON, TEXT, TIMESTAMP, JsonObject, utcnow


class User(SQLModel, table=True):
    __tablename__ = "users"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    discord_id: int | None = Field(default=None, sa_type=BIGINT)
    console_handle: str | None = Field(default=None, sa_type=TEXT)
    display_name: str | None = Field(default=None, sa_type=TEXT)
    timezone: str = Field(default="UTC", sa_type=TEXT)
    display_currency: str = Field(default="USD", sa_type=TEXT)
    alerts_muted_until: datetime | None = Field(default=None, sa_type=TIMESTAMP)
    quiet_hours_start: time | None = None
    quiet_hours_end: time | None = None
    dm_status: str = Field(default="unknown", sa_type=TEXT)
    digest_time: time | None = None
    dm_channel_id: int | None = Field(default=None, sa_type=BIGINT)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    deleted_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class AuditEntry(SQLModel, table=True):
    __tablename__ = "audit_log"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    user_id: UUID
    actor: str = Field(sa_type=TEXT)
    action: str = Field(sa_type=TEXT)
    detail: JsonObject = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class AppState(SQLModel, table=True):
    __tablename__ = "app_state"

    key: str = Field(primary_key=True, sa_type=TEXT)
    value: JsonObject = Field(sa_type=JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
