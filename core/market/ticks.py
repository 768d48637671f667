"""Market data values shared by every part of the system: a tick, and a quote built from the last one."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Tick:
    """One trade (or last-price update) from a provider, in canonical symbols, Decimal values and UTC time."""

    symbol: str
    price: Decimal
    size: Decimal
    ts: datetime
    source: str

    def __post_init__(self) -> None:
        if self.price <= 0 or not self.price.is_finite():
            raise ValueError(f"tick price must be a positive finite number, got {self.price}")
        if self.size < 0 or not self.size.is_finite():
            raise ValueError(f"tick size must be a non-negative finite number, got {self.size}")
        if self.ts.tzinfo is None:
            raise ValueError("tick time must be timezone-aware")


@dataclass(frozen=True, slots=True)
class Quote:
    """The last known price of a symbol, as the bot, the web app and the broker see it."""

    symbol: str
    price: Decimal
    ts: datetime
    source: str
    stale: bool

    @property
    def simulated(self) -> bool:
        """True when the price comes from the local simulator, which every reply must say."""
        return self.source == "sim"
