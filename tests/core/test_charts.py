"""Charts: series read from the real database under RLS, downsampled in SQL, and drawn as PNGs of the asked size."""

from __future__ import annotations

import asyncio
import struct
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core import charts
from core.charts import Series
from core.db.database import Database, raw_connection
from core.errors import DomainError, InvalidInput, NotFound, UnknownSymbol
from core.portfolio import service
from tests.core.orders.conftest import market, new_trader  # noqa: F401 -- shared fixtures
from tests.helpers import Clock

# The market fixture seeds the instruments and sim last prices (AAPL 200, MSFT 400, BTC-USD 90,000) for every test.
pytestmark = pytest.mark.usefixtures("market")
D = Decimal
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> Clock:
    return Clock(NOW)


async def insert_bars(db: Database, symbol: str, start: datetime, count: int, *, source: str = "sim") -> None:
    """`count` 1-minute bars from `start`, written as the feed writes them (system scope); close = 100 + i/100."""
    async with db.system_scope("test.insert_bars") as s:
        conn = await raw_connection(s)
        await conn.execute(
            "INSERT INTO price_bars (symbol, minute, open, high, low, close, source) "
            "SELECT $1, $2::timestamptz + i * interval '1 minute', p, p, p, p, $4 "
            "FROM generate_series(0, $3 - 1) i, LATERAL (SELECT 100 + i / 100.0 AS p) v",
            symbol,
            start,
            count,
            source,
        )


def close(i: int) -> Decimal:
    return D(100) + D(i) / 100


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    length, kind = struct.unpack(">I4s", data[8:16])
    assert kind == b"IHDR" and length == 13
    width, height = struct.unpack(">II", data[16:24])
    return width, height


# --- periods and windows ---------------------------------------------------------------------------------------------


def test_periods_map_to_spans_and_anything_else_is_refused() -> None:
    assert [charts.period_span(p) for p in charts.PERIODS] == [
        timedelta(days=1),
        timedelta(weeks=1),
        timedelta(days=30),
        timedelta(days=91),
        timedelta(days=365),
    ]
    assert charts.period_window(" 1W ", NOW) == (NOW - timedelta(weeks=1), NOW)
    for bad in ["", "2d", "1h", "max"]:
        with pytest.raises(InvalidInput, match="Unknown chart period"):
            charts.period_span(bad)
    with pytest.raises(InvalidInput, match="time zone"):
        charts.period_window("1d", NOW.replace(tzinfo=None))


@given(
    span_us=st.integers(min_value=1, max_value=10 * 365 * 86400 * 10**6),
    max_points=st.integers(min_value=charts.MIN_POINTS, max_value=5000),
)
def test_buckets_never_exceed_max_points_minus_one(span_us: int, max_points: int) -> None:
    width = charts._window(NOW - timedelta(microseconds=span_us), NOW, max_points)
    # generate_series(since, until, width) yields floor(span / width) + 1 bucket starts; the first row makes one more.
    assert span_us // width + 1 + 1 <= max_points


async def test_bad_windows_are_refused(db: Database) -> None:
    async with db.system_scope("test.charts") as s:
        for since, until in [(NOW, NOW), (NOW, NOW - timedelta(days=1)), (NOW.replace(tzinfo=None), NOW)]:
            with pytest.raises(InvalidInput):
                await charts.price_series(s, "AAPL", since=since, until=until)
        with pytest.raises(ValueError, match="max_points"):
            await charts.price_series(s, "AAPL", since=NOW - timedelta(days=1), until=NOW, max_points=2)


# --- price series ----------------------------------------------------------------------------------------------------


async def test_price_series_reads_closes_in_the_window_for_any_user(db: Database) -> None:
    start = NOW - timedelta(minutes=30)
    await insert_bars(db, "AAPL", start - timedelta(minutes=10), 50)  # 10 before the window, 10 after it
    user, _ = await new_trader(db, "alice")
    async with db.user_scope(user) as s:  # reference data: readable in a user's scope
        series = await charts.price_series(s, " aapl ", since=start, until=NOW)
    assert series.title == "AAPL · Apple Inc." and series.unit == "USD" and series.simulated
    assert series.points == [(start + timedelta(minutes=i), close(i + 10)) for i in range(31)]
    assert series.as_of == NOW and series.since == start and series.until == NOW
    assert all(t.tzinfo == UTC for t, _ in series.points)
    assert all(isinstance(v, Decimal) for _, v in series.points)


async def test_price_series_from_a_real_feed_is_not_marked_simulated(db: Database) -> None:
    await insert_bars(db, "BTC-USD", NOW - timedelta(minutes=5), 3, source="binance")
    async with db.system_scope("test.charts") as s:
        series = await charts.price_series(s, "BTC-USD", since=NOW - timedelta(hours=1), until=NOW)
    assert not series.simulated and len(series.points) == 3
    assert series.as_of == NOW - timedelta(minutes=3)  # the newest bar, not the time asked


async def test_no_bars_yet_is_an_empty_series_not_an_error(db: Database) -> None:
    async with db.system_scope("test.charts") as s:
        series = await charts.price_series(s, "MSFT", since=NOW - timedelta(days=1), until=NOW)
    assert series.points == [] and series.as_of == NOW and not series.simulated


async def test_an_unknown_symbol_is_a_domain_error(db: Database) -> None:
    user, _ = await new_trader(db, "alice")
    for bad in ["NOPE", "", "x" * 500]:
        with pytest.raises(UnknownSymbol) as info:
            async with db.user_scope(user) as s:
                await charts.price_series(s, bad, since=NOW - timedelta(days=1), until=NOW)
        assert isinstance(info.value, DomainError) and info.value.code == "unknown_symbol"
        assert len(info.value.message) < 120


@pytest.mark.parametrize(("minutes", "max_points"), [(3 * 1440, 50), (7 * 1440, charts.MAX_POINTS), (600, 7)])
async def test_downsampling_keeps_at_most_n_points_and_the_first_and_last(
    db: Database, minutes: int, max_points: int
) -> None:
    since = NOW - timedelta(minutes=minutes)
    await insert_bars(db, "BTC-USD", since + timedelta(minutes=3), minutes - 5)  # starts and ends off the edges
    async with db.system_scope("test.charts") as s:
        series = await charts.price_series(s, "BTC-USD", since=since, until=NOW, max_points=max_points)
    points = series.points
    assert max_points - 2 <= len(points) <= max_points
    assert points[0] == (since + timedelta(minutes=3), close(0))
    assert points[-1] == (since + timedelta(minutes=minutes - 3), close(minutes - 6))
    times = [t for t, _ in points]
    assert times == sorted(set(times))
    # Every point is a real bar's close, not an average.
    assert all(v == close(int((t - since) / timedelta(minutes=1)) - 3) for t, v in points)


async def test_a_sparse_window_keeps_every_point(db: Database) -> None:
    since = NOW - timedelta(days=365)
    for day in (0, 100, 364):
        await insert_bars(db, "AAPL", since + timedelta(days=day, hours=15), 1)
    async with db.system_scope("test.charts") as s:
        series = await charts.price_series(s, "AAPL", since=since, until=NOW)
    assert [t for t, _ in series.points] == [since + timedelta(days=d, hours=15) for d in (0, 100, 364)]


# --- equity series ---------------------------------------------------------------------------------------------------


async def snapshots(db: Database, times: list[datetime]) -> None:
    for at in times:
        async with db.system_scope("test.snapshots") as s:
            await service.snapshot_equity(s, at)


async def test_equity_series_is_visible_only_to_its_owner(db: Database) -> None:
    alice, alice_pf = await new_trader(db, "alice", cash="10000")
    bob, _ = await new_trader(db, "bob", cash="500")
    times = [NOW - timedelta(hours=h) for h in (5, 3, 1)]
    await snapshots(db, times)
    async with db.user_scope(alice) as s:
        series = await charts.equity_series(s, alice_pf, since=NOW - timedelta(days=1), until=NOW)
    assert series.title == "Main · equity" and series.unit == "USD"
    assert series.points == [(t, D(10000)) for t in times] and series.as_of == times[-1]
    assert not series.simulated  # holds nothing, so nothing is marked at a simulated price
    with pytest.raises(NotFound) as info:
        async with db.user_scope(bob) as s:
            await charts.equity_series(s, alice_pf, since=NOW - timedelta(days=1), until=NOW)
    assert info.value.code == "not_found" and info.value.message == "That portfolio does not exist."
    with pytest.raises(NotFound):
        async with db.user_scope(alice) as s:
            await charts.equity_series(s, UUID(int=1), since=NOW - timedelta(days=1), until=NOW)


async def test_equity_marked_at_simulated_prices_says_so_and_downsamples(db: Database) -> None:
    user, pf = await new_trader(db, "alice", cash="10000")
    # A position marked at the sim feed's last price (the market fixture's prices are 'sim'), and 1,000 snapshots.
    async with db.system_scope("test.position") as s:
        conn = await raw_connection(s)
        await conn.execute(
            "INSERT INTO positions (user_id, portfolio_id, symbol, qty, avg_cost, cost_basis) "
            "VALUES ($1, $2, 'AAPL', 1, 200, 200)",
            user,
            pf,
        )
        await conn.execute(
            "INSERT INTO equity_snapshots (user_id, portfolio_id, ts, equity, cash, positions_value, realized_pnl,"
            " unrealized_pnl) SELECT $1, $2, $3::timestamptz - i * interval '10 minutes', 10000 + i, 10000, i, 0, 0"
            " FROM generate_series(0, 999) i",
            user,
            pf,
            NOW,
        )
    async with db.user_scope(user) as s:
        series = await charts.equity_series(s, pf, since=NOW - timedelta(days=7), until=NOW, max_points=100)
    assert series.simulated
    assert len(series.points) <= 100
    assert series.points[0] == (NOW - timedelta(minutes=10 * 999), D(10999))
    assert series.points[-1] == (NOW, D(10000))


# --- rendering -------------------------------------------------------------------------------------------------------


def many_points(n: int) -> list[tuple[datetime, Decimal]]:
    return [(NOW - timedelta(minutes=10 * (n - i)), D("90000.5") + D(i % 37) * 7) for i in range(n)]


SERIES = {
    "empty": Series("MSFT · Microsoft Corp.", "USD", [], True, NOW, NOW - timedelta(days=1), NOW),
    "one point": Series("AAPL · Apple Inc.", "USD", [(NOW, D("200.1234"))], True, NOW, NOW - timedelta(days=1), NOW),
    "many points": Series("BTC-USD · Bitcoin", "USD", many_points(500), False, NOW),
    "flat": Series("Main · equity", "USD", [(NOW - timedelta(hours=1), D(1)), (NOW, D(1))], False, NOW),
}


@pytest.mark.parametrize("name", SERIES)
@pytest.mark.parametrize(("width", "height"), [(800, 400), (333, 217), (1200, 630)])
def test_render_png_draws_a_png_of_the_asked_size(name: str, width: int, height: int) -> None:
    data = charts.render_png(SERIES[name], width_px=width, height_px=height)
    assert png_size(data) == (width, height)
    assert data.endswith(b"IEND\xaeB`\x82")


def test_rendering_is_deterministic_and_says_what_it_shows() -> None:
    first = charts.render_png(SERIES["many points"])
    assert first == charts.render_png(SERIES["many points"])
    assert first != charts.render_png(SERIES["empty"])
    with pytest.raises(InvalidInput):
        charts.render_png(SERIES["empty"], width_px=10)


async def test_render_chart_runs_in_a_thread_and_renders_concurrently() -> None:
    results = await asyncio.gather(*(charts.render_chart(s, width_px=400, height_px=200) for s in SERIES.values()))
    assert [png_size(r) for r in results] == [(400, 200)] * len(SERIES)


def test_importing_the_module_does_not_import_matplotlib() -> None:
    code = "import sys, core.charts; assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
