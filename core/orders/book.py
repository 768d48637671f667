"""The worker's index of resting orders: per symbol, sorted by the price at which each order acts.

A tick at price p must find exactly the orders it makes act, in O(log n + k), not by scanning every resting order:
- "at or below" levels act when p <= level: buy limits, sell stops. Sorted ascending, they are a suffix.
- "at or above" levels act when p >= level: sell limits, buy stops. Sorted ascending, they are a prefix.
Market orders placed while the market was closed wait in a plain list for the first tick of the open.
Equal levels keep arrival order. The database stays the source of truth: this index is rebuilt from it at start
and follows committed changes (see core/orders/matching.py).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from decimal import Decimal
from uuid import UUID


@dataclass(frozen=True, slots=True)
class RestingOrder:
    id: UUID
    symbol: str
    side: str  # buy | sell
    type: str  # market | limit | stop | stop_limit
    limit_price: Decimal | None
    stop_price: Decimal | None
    triggered: bool = False  # a stop-limit whose stop was hit: it now rests as a limit

    @property
    def acts_as_limit(self) -> bool:
        return self.type == "limit" or (self.type == "stop_limit" and self.triggered)

    def placement(self) -> tuple[str, Decimal | None]:
        """Which side of the book the order rests in, and at what level."""
        if self.type == "market":
            return "market", None
        if self.acts_as_limit:
            return ("at_or_below" if self.side == "buy" else "at_or_above"), self.limit_price
        return ("at_or_above" if self.side == "buy" else "at_or_below"), self.stop_price


Entry = tuple[Decimal, int, UUID]


@dataclass(slots=True)
class _SymbolBook:
    at_or_below: list[Entry] = field(default_factory=list)
    at_or_above: list[Entry] = field(default_factory=list)
    market: list[UUID] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.at_or_below) + len(self.at_or_above) + len(self.market)


class OrderBook:
    def __init__(self) -> None:
        self._books: dict[str, _SymbolBook] = {}
        self._orders: dict[UUID, tuple[RestingOrder, Entry | None]] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: UUID) -> bool:
        return order_id in self._orders

    def get(self, order_id: UUID) -> RestingOrder | None:
        found = self._orders.get(order_id)
        return found[0] if found else None

    def symbols(self) -> set[str]:
        return {s for s, b in self._books.items() if len(b)}

    def add(self, order: RestingOrder) -> None:
        """Index an order (replacing an earlier version of it)."""
        self.remove(order.id)
        book = self._books.setdefault(order.symbol, _SymbolBook())
        where, level = order.placement()
        entry: Entry | None = None
        if where == "market":
            book.market.append(order.id)
        else:
            assert level is not None
            entry = (level, next(self._seq), order.id)
            bisect.insort(getattr(book, where), entry)
        self._orders[order.id] = (order, entry)

    def remove(self, order_id: UUID) -> RestingOrder | None:
        found = self._orders.pop(order_id, None)
        if found is None:
            return None
        order, entry = found
        book = self._books[order.symbol]
        where, _ = order.placement()
        if entry is None:
            book.market.remove(order_id)
        else:
            side: list[Entry] = getattr(book, where)
            del side[bisect.bisect_left(side, entry)]
        return order

    def take_triggered(self, symbol: str, price: Decimal) -> list[RestingOrder]:
        """Remove and return every order that a trade at `price` makes act, market orders first."""
        book = self._books.get(symbol)
        if book is None or not len(book):
            return []
        taken = [self._orders.pop(i)[0] for i in book.market]
        book.market.clear()
        start = bisect.bisect_left(book.at_or_below, (price,))
        for _, _, order_id in book.at_or_below[start:]:
            taken.append(self._orders.pop(order_id)[0])
        del book.at_or_below[start:]
        end = bisect.bisect_right(book.at_or_above, (price, math.inf))
        for _, _, order_id in book.at_or_above[:end]:
            taken.append(self._orders.pop(order_id)[0])
        del book.at_or_above[:end]
        return taken
