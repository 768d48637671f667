"""The instruments migration (0009) against the sim universe and the providers' symbol maps."""

from __future__ import annotations

from decimal import Decimal

from core.db.database import Database
from core.market.instruments import SymbolMap, load_instruments
from core.market.sessions import ALWAYS, US_EQUITY
from core.market.sim import UNIVERSE


async def test_the_seeded_universe(db: Database) -> None:
    instruments = await load_instruments(db)
    equities = {"AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "JPM"}
    crypto = {"BTC-USD", "ETH-USD", "BTC-USDT", "ETH-USDT"}
    assert set(instruments) == equities | {"SPY"} | crypto
    for symbol, info in instruments.items():
        if symbol in crypto:
            assert (info.asset_class, info.trading_session) == ("crypto", ALWAYS)
            assert info.quote_currency == symbol.split("-")[1]  # USDT is not USD
        else:
            assert (info.asset_class, info.trading_session) == ("etf" if symbol == "SPY" else "equity", US_EQUITY)
            assert (info.quote_currency, info.lot_size) == ("USD", Decimal(1))
        assert info.tick_size == Decimal("0.01") and info.active
    assert instruments["BTC-USD"].lot_size == Decimal("0.00001")
    assert instruments["ETH-USDT"].lot_size == Decimal("0.0001")


async def test_the_sim_streams_exactly_its_instruments_on_their_grid(db: Database) -> None:
    instruments = await load_instruments(db)
    sim = SymbolMap.for_provider("sim", instruments.values())
    assert sim.canonical_symbols == sorted(i.symbol for i in UNIVERSE)
    for spec in UNIVERSE:
        assert (instruments[spec.symbol].tick_size, instruments[spec.symbol].lot_size) == (
            spec.tick_size,
            spec.lot_size,
        )
        assert spec.start_price % spec.tick_size == 0


async def test_binance_symbols(db: Database) -> None:
    binance = SymbolMap.for_provider("binance", (await load_instruments(db)).values())
    assert binance.canonical_symbols == ["BTC-USDT", "ETH-USDT"]
    assert binance.canonical("BTCUSDT") == "BTC-USDT" and binance.provider_symbol("ETH-USDT") == "ETHUSDT"
