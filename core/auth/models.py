from __future__ import annotations

from datetime import datetime
from uuid import UUID

from sqlmodel import Field, SQLModel

from core.db.types import BYTES, TEXT, TIMESTAMP, utcnow


class LoginToken(SQLModel, table=True):
    __tablename__ = "login_tokens"

    token_hash: bytes = Field(primary_key=True, sa_type=BYTES)
    user_id: UUID
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)
    used_at: datetime | None = Field(default=None, sa_type=TIMESTAMP)


class WebSession(SQLModel, table=True):
    __tablename__ = "web_sessions"

    session_hash: bytes = Field(primary_key=True, sa_type=BYTES)
    user_id: UUID
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    expires_at: datetime = Field(sa_type=TIMESTAMP)
    last_seen_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    user_agent: str | None = Field(default=None, sa_type=TEXT)
