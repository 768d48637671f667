"""Provider adapters on their own: Binance's and the sim's frames to Ticks, control frames, and hostile input."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import SetupError
from core.market.instruments import InstrumentInfo, SymbolMap
from core.market.providers import make_adapter
from core.market.providers.base import ProviderEvent
from core.market.providers.binance import BinanceAdapter
from core.market.providers.sim import SimAdapter
from core.market.ticks import Tick
from tests.core.market.wire import BINANCE_SYMBOLS, SIM_SYMBOLS, fixture, frame, sim_trade


def binance() -> BinanceAdapter:
    return BinanceAdapter(BINANCE_SYMBOLS)


def test_binance_raw_trade_becomes_a_canonical_decimal_tick() -> None:
    adapter = binance()
    ticks = adapter.parse(frame("binance_trade_raw.json"))
    assert ticks == [
        Tick(
            "BTC-USDT",
            Decimal("90412.35000000"),
            Decimal("0.00213000"),
            datetime(2025, 11, 25, 16, 0, 0, 121000, tzinfo=UTC),
            "binance",
        )
    ]
    assert type(ticks[0].price) is Decimal and type(ticks[0].size) is Decimal
    assert adapter.malformed == 0 and adapter.events == []


def test_binance_combined_stream_trade_and_bytes_frames() -> None:
    adapter = binance()
    [tick] = adapter.parse(frame("binance_trade_combined.json").encode())
    assert (tick.symbol, tick.price, tick.size) == ("ETH-USDT", Decimal("3021.07"), Decimal("1.25"))
    assert tick.ts == datetime(2025, 11, 25, 16, 0, 0, 455000, tzinfo=UTC)


def test_binance_microsecond_timestamps_are_understood() -> None:
    message = fixture("binance_trade_raw.json") | {"T": 1764086400121456}
    [tick] = binance().parse(json.dumps(message))
    assert tick.ts == datetime(2025, 11, 25, 16, 0, 0, 121456, tzinfo=UTC)


def test_binance_trade_of_a_symbol_we_dont_stream_is_ignored_not_malformed() -> None:
    adapter = binance()
    assert adapter.parse(json.dumps(fixture("binance_trade_raw.json") | {"s": "BNBBTC"})) == []
    assert adapter.malformed == 0


@pytest.mark.parametrize(
    ("name", "event"),
    [
        ("subscribe_ack", ProviderEvent("subscribed", "request 1 acknowledged")),
        ("error", ProviderEvent("error", "request 7: Invalid request: unknown stream")),
        ("server_shutdown_raw", ProviderEvent("reconnect", "Binance announced a server shutdown")),
        ("server_shutdown_combined", ProviderEvent("reconnect", "Binance announced a server shutdown")),
    ],
)
def test_binance_control_frames_yield_no_ticks_and_one_event(name: str, event: ProviderEvent) -> None:
    adapter = binance()
    assert adapter.parse(json.dumps(fixture("binance_control.json")[name])) == []
    assert adapter.events == [event]
    assert adapter.malformed == 0


def test_binance_garbage_is_counted_and_skipped() -> None:
    adapter = binance()
    garbage = fixture("garbage_frames.json")
    for raw in garbage:
        assert adapter.parse(raw) == []
    assert adapter.malformed == len(garbage)
    assert adapter.parse(frame("binance_trade_raw.json"))  # and it still parses what follows


def test_binance_subscribe_messages_name_lowercase_trade_streams_and_fit_binance_limits() -> None:
    adapter = binance()
    [message] = adapter.subscribe_messages(["BTC-USDT", "ETH-USDT"])
    assert json.loads(message) == {"method": "SUBSCRIBE", "params": ["btcusdt@trade", "ethusdt@trade"], "id": 1}

    many = SymbolMap("binance", {f"C{i}-USDT": f"C{i}USDT" for i in range(600)})
    messages = BinanceAdapter(many).subscribe_messages(many.canonical_symbols)
    bodies = [json.loads(m) for m in messages]
    assert [len(b["params"]) for b in bodies] == [256, 256, 88]  # <= 5 frames/s, <= 1024 streams
    assert [b["id"] for b in bodies] == [1, 2, 3]


def test_binance_url_is_the_public_endpoint_unless_configured() -> None:
    from core.config import Settings

    assert binance().url(Settings(market_provider="binance")) == "wss://stream.binance.com:9443/ws"
    testnet = "wss://stream.testnet.binance.vision/ws"
    assert binance().url(Settings(market_provider="binance", market_url=testnet)) == testnet


def test_sim_frames() -> None:
    adapter = SimAdapter(SIM_SYMBOLS)
    assert json.loads(adapter.subscribe_messages(["AAPL", "BTC-USD"])[0]) == {
        "op": "subscribe",
        "symbols": ["AAPL", "BTC-USD"],
    }
    [tick] = adapter.parse(sim_trade("BTC-USD", "90000.01", "0.00042"))
    assert (tick.symbol, tick.price, tick.size, tick.source) == (
        "BTC-USD",
        Decimal("90000.01"),
        Decimal("0.00042"),
        "sim",
    )
    assert adapter.parse('{"type": "heartbeat", "t": 1764086400000}') == []
    assert adapter.parse('{"type": "subscribed", "symbols": ["AAPL"]}') == []
    assert adapter.parse('{"type": "error", "msg": "unknown symbol(s): ZZZ"}') == []
    assert adapter.events == [
        ProviderEvent("subscribed", "1 symbol(s)"),
        ProviderEvent("error", "unknown symbol(s): ZZZ"),
    ]
    assert adapter.parse('{"type": "trade", "s": "AAPL", "p": 230.1, "q": "1", "t": 1764086400000}') == []
    assert adapter.malformed == 1


def test_symbol_map_from_instruments_and_unsupported_providers() -> None:
    def instrument(symbol: str, providers: dict[str, str], active: bool = True) -> InstrumentInfo:
        return InstrumentInfo(
            symbol, symbol, "crypto", "USDT", Decimal("0.01"), Decimal(1), "always", providers, active
        )

    symbols = SymbolMap.for_provider(
        "binance",
        [
            instrument("BTC-USDT", {"binance": "BTCUSDT"}),
            instrument("BTC-USD", {"sim": "BTC-USD"}),
            instrument("XRP-USDT", {"binance": "XRPUSDT"}, active=False),
        ],
    )
    assert symbols.canonical_symbols == ["BTC-USDT"]
    assert (symbols.provider_symbol("BTC-USDT"), symbols.canonical("BTCUSDT"), symbols.canonical("XRPUSDT")) == (
        "BTCUSDT",
        "BTC-USDT",
        None,
    )
    with pytest.raises(ValueError, match="share"):
        SymbolMap("binance", {"BTC-USDT": "BTCUSDT", "XBT-USDT": "BTCUSDT"})
    with pytest.raises(SetupError, match="coinbase is not supported"):
        make_adapter("coinbase", symbols)


# -- hostile input: the parsers never raise, and whatever they return carries Decimals, never floats -----------------

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
NUMBERISH = st.one_of(
    st.decimals(allow_nan=True, allow_infinity=True).map(str),
    st.from_regex(r"-?[0-9]{0,25}(\.[0-9]{0,25})?([eE][-+]?[0-9]{1,12})?", fullmatch=True),
    st.integers(),
    JSON_VALUES,
)
BINANCE_TRADES = st.fixed_dictionaries(
    {
        "e": st.sampled_from(["trade", "aggTrade"]),
        "s": st.sampled_from(["BTCUSDT", "ETHUSDT"]) | JSON_VALUES,
        "p": NUMBERISH,
        "q": NUMBERISH,
        "T": st.integers() | JSON_VALUES,
    }
)
SIM_TRADES = st.fixed_dictionaries(
    {
        "type": st.just("trade"),
        "s": st.sampled_from(["AAPL", "BTC-USD"]) | JSON_VALUES,
        "p": NUMBERISH,
        "q": NUMBERISH,
        "t": st.integers() | JSON_VALUES,
    }
)


def assert_sane(ticks: list[Tick]) -> None:
    for tick in ticks:
        assert type(tick.price) is Decimal and type(tick.size) is Decimal
        assert tick.price > 0 and tick.price.is_finite() and tick.size >= 0 and tick.size.is_finite()
        assert tick.ts.tzinfo is not None


@settings(max_examples=300)
@given(raw=st.text() | st.binary())
def test_parsers_never_raise_on_arbitrary_frames(raw: str | bytes) -> None:
    for adapter in (binance(), SimAdapter(SIM_SYMBOLS)):
        ticks = adapter.parse(raw)
        assert_sane(ticks)
        assert adapter.malformed in (0, 1)
        assert not (ticks and adapter.malformed)


@settings(max_examples=300)
@given(message=BINANCE_TRADES, combined=st.booleans())
def test_binance_parser_on_trade_shaped_junk(message: dict[str, object], combined: bool) -> None:
    adapter = binance()
    wrapped = {"stream": "x@trade", "data": message} if combined else message
    ticks = adapter.parse(json.dumps(wrapped))
    assert_sane(ticks)
    assert len(ticks) + adapter.malformed <= 1


@settings(max_examples=300)
@given(message=SIM_TRADES)
def test_sim_parser_on_trade_shaped_junk(message: dict[str, object]) -> None:
    adapter = SimAdapter(SIM_SYMBOLS)
    ticks = adapter.parse(json.dumps(message))
    assert_sane(ticks)
    assert len(ticks) + adapter.malformed <= 1


@given(depth=st.integers(min_value=1_000, max_value=100_000))
def test_deeply_nested_frames_are_malformed_not_a_crash(depth: int) -> None:
    adapter = binance()
    assert adapter.parse("[" * depth + "]" * depth) == []
    assert adapter.malformed == 1
