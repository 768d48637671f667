"""What any broker offers: submit, cancel and list orders. PaperBroker is the default (and so far the only one)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Protocol
from uuid import UUID

from core.db.database import Scope
from core.orders.models import OrderView


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"


class OrderType(StrEnum):
    MARKET = "market"
    LIMIT = "limit"
    STOP = "stop"
    STOP_LIMIT = "stop_limit"


class TimeInForce(StrEnum):
    DAY = "day"
    GTC = "gtc"
    IOC = "ioc"


OPEN_STATUSES = ("new", "partially_filled")


@dataclass(frozen=True)
class OrderRequest:
    portfolio_id: UUID
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    tif: TimeInForce = TimeInForce.DAY
    limit_price: Decimal | None = None
    stop_price: Decimal | None = None
    # Bound to what the user confirmed (a proposal) so that a retried submission returns the first order.
    client_order_id: str | None = None
    proposal_id: UUID | None = None


class Broker(Protocol):
    async def submit(self, session: Scope, request: OrderRequest) -> OrderView: ...

    async def cancel(self, session: Scope, order_id: UUID) -> OrderView: ...

    async def orders(self, session: Scope, *, open_only: bool = False, limit: int = 50) -> list[OrderView]: ...
