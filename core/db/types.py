"""Column types shared by the SQLModel classes, matching the migrations' NUMERIC scales and timestamptz."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Numeric, Text
from sqlalchemy.dialects.postgresql import BYTEA, JSONB

QUANTITY = Numeric(28, 10, asdecimal=True)
PRICE = Numeric(28, 10, asdecimal=True)
MONEY = Numeric(28, 4, asdecimal=True)
PERCENT = Numeric(9, 4, asdecimal=True)
TIMESTAMP = DateTime(timezone=True)
TEXT = Text()
BIGINT = BigInteger()
JSON = JSONB()
BYTES = BYTEA()

JsonObject = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(UTC)
