"""Instruments reference data (migrations/0009_instruments.sql), as typed values, and provider symbol mapping.

Instruments change only through migrations, so a process loads them once at start. Each row's `provider_symbols`
maps a provider name to that provider's own symbol (`{"binance": "BTCUSDT"}`); a provider streams exactly the active
instruments that have an entry for it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from core.db.database import Database

_SELECT = text(
    "SELECT symbol, name, asset_class, quote_currency, tick_size, lot_size, trading_session, provider_symbols, active"
    " FROM instruments ORDER BY symbol"
)


@dataclass(frozen=True, slots=True)
class InstrumentInfo:
    symbol: str
    name: str
    asset_class: str
    quote_currency: str
    tick_size: Decimal
    lot_size: Decimal
    trading_session: str
    provider_symbols: Mapping[str, str] = field(default_factory=dict)
    active: bool = True


def _provider_symbols(value: Any) -> dict[str, str]:
    # asyncpg hands jsonb over as text unless a codec is set; accept both.
    data = json.loads(value) if isinstance(value, str) else value
    return {str(k): str(v) for k, v in (data or {}).items()}


async def load_instruments(database: Database, *, active_only: bool = True) -> dict[str, InstrumentInfo]:
    """Every instrument by canonical symbol. Reference data: readable by tradedesk_user, so no scope is needed."""
    async with database.engine.connect() as conn:
        rows = (await conn.execute(_SELECT)).mappings().all()
    found = {
        r["symbol"]: InstrumentInfo(
            symbol=r["symbol"],
            name=r["name"],
            asset_class=r["asset_class"],
            quote_currency=r["quote_currency"],
            tick_size=r["tick_size"],
            lot_size=r["lot_size"],
            trading_session=r["trading_session"],
            provider_symbols=_provider_symbols(r["provider_symbols"]),
            active=r["active"],
        )
        for r in rows
    }
    return {s: i for s, i in found.items() if i.active or not active_only}


class SymbolMap:
    """Canonical symbols (AAPL, BTC-USDT) to one provider's own names (BTCUSDT) and back."""

    def __init__(self, provider: str, pairs: Mapping[str, str]) -> None:
        self.provider = provider
        self._to_provider = dict(pairs)
        self._to_canonical = {p: c for c, p in self._to_provider.items()}
        if len(self._to_canonical) != len(self._to_provider):
            raise ValueError(f"two instruments share one {provider} symbol: {sorted(self._to_provider.items())}")

    @classmethod
    def for_provider(cls, provider: str, instruments: Iterable[InstrumentInfo]) -> SymbolMap:
        """The active instruments `provider` streams, by their provider_symbols entry."""
        return cls(
            provider,
            {
                i.symbol: i.provider_symbols[provider]
                for i in instruments
                if i.active and provider in i.provider_symbols
            },
        )

    @property
    def canonical_symbols(self) -> list[str]:
        return sorted(self._to_provider)

    def provider_symbol(self, canonical: str) -> str:
        """The provider's name for `canonical`; KeyError for a symbol this provider doesn't stream."""
        return self._to_provider[canonical]

    def canonical(self, provider_symbol: str) -> str | None:
        """The canonical symbol for a provider's name, or None for one we don't map."""
        return self._to_canonical.get(provider_symbol)

    def __len__(self) -> int:
        return len(self._to_provider)
