"""Market data providers: one small adapter module each, behind `ProviderAdapter` (see base.py)."""

from __future__ import annotations

from collections.abc import Callable

from core.errors import SetupError
from core.market.instruments import SymbolMap
from core.market.providers.base import ProviderAdapter
from core.market.providers.binance import BinanceAdapter
from core.market.providers.sim import SimAdapter

ADAPTERS: dict[str, Callable[[SymbolMap], ProviderAdapter]] = {
    "sim": SimAdapter,
    "binance": BinanceAdapter,
}


def make_adapter(provider: str, symbols: SymbolMap) -> ProviderAdapter:
    """The adapter for `provider`; SetupError for a provider this build has no adapter for yet."""
    factory = ADAPTERS.get(provider)
    if factory is None:
        raise SetupError(
            f"TRADEDESK_MARKET_PROVIDER={provider} is not supported in this build yet; use one of: "
            + ", ".join(sorted(ADAPTERS))
        )
    return factory(symbols)
