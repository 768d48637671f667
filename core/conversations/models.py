from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

from sqlmodel import Field, SQLModel

from core.db.types import BIGINT, JSON, TEXT, TIMESTAMP, utcnow


class Conversation(SQLModel, table=True):
    __tablename__ = "conversations"

    id: UUID = Field(default_factory=uuid4, primary_key=True)
    user_id: UUID
    channel: str = Field(sa_type=TEXT)
    title: str | None = Field(default=None, sa_type=TEXT)
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)


class Message(SQLModel, table=True):
    __tablename__ = "messages"

    id: int | None = Field(default=None, primary_key=True, sa_type=BIGINT)
    user_id: UUID
    conversation_id: UUID
    role: str = Field(sa_type=TEXT)
    content: str = Field(sa_type=TEXT)
    tool_calls: list[dict[str, Any]] | None = Field(default=None, sa_type=JSON)
    tool_call_id: str | None = Field(default=None, sa_type=TEXT)
    token_count: int = 0
    created_at: datetime = Field(default_factory=utcnow, sa_type=TIMESTAMP)
