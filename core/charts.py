"""Charts as PNG images: one renderer shared by /chart, the agent's get_chart tool and the dashboard.

Two steps, so every transport can do its own thing between them (an embed, a tool attachment, an HTTP response):

- `price_series` / `equity_series` read a `Series` from the database in the caller's scope. Price series come from
  the 1-minute `price_bars` (reference data), equity series from `equity_snapshots` (a tenant table: RLS shows the
  scoped user only their own portfolios). Long windows are downsampled in SQL: the window is cut into at most
  `max_points - 1` equal buckets and each bucket contributes its newest row, found by one index probe, plus the
  window's very first row. So a year of minute bars (525k rows) costs ~500 index lookups, never a scan, and the
  first and last points are always kept. Empty data is not an error: the picture says "no data yet".
- `render_png` draws a Series with matplotlib's Agg backend through `Figure` + `FigureCanvasAgg` (no pyplot: its
  global figure registry is not thread-safe and leaks figures). matplotlib is imported inside the function, so
  importing this module costs nothing. Rendering takes tens of milliseconds: async callers use `render_chart`,
  which runs it in a worker thread.
"""

from __future__ import annotations

import asyncio
import math
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Literal, get_args
from uuid import UUID

from core.db.database import Scope, scope_connection
from core.errors import InvalidInput, NotFound, UnknownSymbol

Period = Literal["1d", "1w", "1m", "3m", "1y"]
PERIODS: tuple[Period, ...] = get_args(Period)
_SPANS: dict[str, timedelta] = {
    "1d": timedelta(days=1),
    "1w": timedelta(weeks=1),
    "1m": timedelta(days=30),
    "3m": timedelta(days=91),
    "1y": timedelta(days=365),
}
MAX_POINTS = 500
MIN_POINTS = 3
MIN_PX, MAX_PX = 200, 4000


@dataclass(frozen=True)
class Series:
    """Points to draw, oldest first, with what the picture must say about them.

    `as_of` is the time of the newest point (when there is none: the end of the window looked at). `since`/`until`
    are the window asked for, so an empty or sparse series is still drawn over the right dates.
    """

    title: str
    unit: str
    points: list[tuple[datetime, Decimal]]
    simulated: bool
    as_of: datetime
    since: datetime | None = None
    until: datetime | None = None


def period_span(period: str) -> timedelta:
    """How far back a period reaches: "1d", "1w", "1m" (30 days), "3m" (91 days) or "1y" (365 days)."""
    span = _SPANS.get(period.strip().lower()) if isinstance(period, str) else None
    if span is None:
        raise InvalidInput(f"Unknown chart period {period!r}: use one of {', '.join(PERIODS)}.")
    return span


def period_window(period: str, now: datetime) -> tuple[datetime, datetime]:
    """The (since, until) window of `period` ending at `now`."""
    _check_aware(now, "now")
    return now - period_span(period), now


def _check_aware(value: datetime, what: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"The chart's {what} time needs a time zone.")


def _window(since: datetime, until: datetime, max_points: int) -> int:
    """Validate the window; the bucket width in whole microseconds, so at most max_points - 1 buckets fit in it."""
    _check_aware(since, "start")
    _check_aware(until, "end")
    if since >= until:
        raise InvalidInput("A chart's start must be before its end.")
    if max_points < MIN_POINTS:
        raise ValueError(f"max_points must be at least {MIN_POINTS}, got {max_points}")
    span_us = (until - since) // timedelta(microseconds=1)
    # Bucket starts are since + k*width for k = 0..floor(span/width) <= max_points - 2: at most max_points - 1
    # buckets, plus the window's first row.
    return max(1, -(-span_us // (max_points - 2)))


# For each bucket the newest row (one backward index probe), plus the window's first row; UNION drops the duplicate
# when the first row is also the newest of its bucket. The width is microseconds times an interval of one
# microsecond: a pure time interval, so bucket edges don't move with the session's time zone or DST.
_PRICE_POINTS = """
WITH w AS (SELECT $4::bigint * interval '1 microsecond' AS width),
buckets AS (SELECT b AS start FROM w, generate_series($2::timestamptz, $3::timestamptz, w.width) AS b)
SELECT p.minute AS ts, p.close AS value, p.source
  FROM buckets CROSS JOIN w CROSS JOIN LATERAL (
       SELECT minute, close, source FROM price_bars
        WHERE symbol = $1 AND minute >= buckets.start AND minute < buckets.start + w.width AND minute <= $3
        ORDER BY minute DESC LIMIT 1) p
UNION
SELECT * FROM (SELECT minute, close, source FROM price_bars
                WHERE symbol = $1 AND minute >= $2 AND minute <= $3 ORDER BY minute LIMIT 1) f
ORDER BY ts
"""

_EQUITY_POINTS = """
WITH w AS (SELECT $4::bigint * interval '1 microsecond' AS width),
buckets AS (SELECT b AS start FROM w, generate_series($2::timestamptz, $3::timestamptz, w.width) AS b)
SELECT e.ts, e.equity AS value
  FROM buckets CROSS JOIN w CROSS JOIN LATERAL (
       SELECT ts, equity FROM equity_snapshots
        WHERE portfolio_id = $1 AND ts >= buckets.start AND ts < buckets.start + w.width AND ts <= $3
        ORDER BY ts DESC LIMIT 1) e
UNION
SELECT * FROM (SELECT ts, equity FROM equity_snapshots
                WHERE portfolio_id = $1 AND ts >= $2 AND ts <= $3 ORDER BY ts LIMIT 1) f
ORDER BY ts
"""

# A paper portfolio's equity is simulated when the prices it is marked at are: any symbol it holds or held whose
# last price comes from the sim feed. (Snapshots don't record their price source; this is the closest honest test.)
_EQUITY_SIMULATED = """
SELECT EXISTS (SELECT 1 FROM positions p JOIN last_prices lp USING (symbol)
                WHERE p.portfolio_id = $1 AND lp.source = 'sim')
"""


async def price_series(
    session: Scope, symbol: str, *, since: datetime, until: datetime, max_points: int = MAX_POINTS
) -> Series:
    """Closing prices of `symbol`'s 1-minute bars in [since, until], at most `max_points` of them, oldest first.

    Raises UnknownSymbol for a symbol that is not a listed instrument (inactive ones keep their history).
    """
    width_us = _window(since, until, max_points)
    clean = symbol.strip().upper() if isinstance(symbol, str) else ""
    conn = await scope_connection(session)
    instrument = await conn.fetchrow("SELECT symbol, name, quote_currency FROM instruments WHERE symbol = $1", clean)
    if instrument is None:
        raise UnknownSymbol(f"Unknown symbol {str(symbol)[:20]!r}: charts are available for the listed instruments.")
    rows = await conn.fetch(_PRICE_POINTS, clean, since, until, width_us)
    points = [(r["ts"].astimezone(UTC), r["value"]) for r in rows]
    return Series(
        title=f"{instrument['symbol']} · {instrument['name']}",
        unit=instrument["quote_currency"],
        points=points,
        simulated=any(r["source"] == "sim" for r in rows),
        as_of=points[-1][0] if points else until.astimezone(UTC),
        since=since.astimezone(UTC),
        until=until.astimezone(UTC),
    )


async def equity_series(
    session: Scope, portfolio_id: UUID, *, since: datetime, until: datetime, max_points: int = MAX_POINTS
) -> Series:
    """Equity snapshots of one of the scoped user's portfolios in [since, until], at most `max_points`, oldest first.

    Another user's portfolio is invisible under RLS and raises NotFound, exactly like one that doesn't exist.
    """
    width_us = _window(since, until, max_points)
    conn = await scope_connection(session)
    portfolio = await conn.fetchrow("SELECT name, currency FROM portfolios WHERE id = $1", portfolio_id)
    if portfolio is None:
        raise NotFound("That portfolio does not exist.")
    rows = await conn.fetch(_EQUITY_POINTS, portfolio_id, since, until, width_us)
    points = [(r["ts"].astimezone(UTC), r["value"]) for r in rows]
    return Series(
        title=f"{portfolio['name']} · equity",
        unit=portfolio["currency"],
        points=points,
        simulated=bool(await conn.fetchval(_EQUITY_SIMULATED, portfolio_id)),
        as_of=points[-1][0] if points else until.astimezone(UTC),
        since=since.astimezone(UTC),
        until=until.astimezone(UTC),
    )


# matplotlib's documentation says it is not thread-safe (font cache, text layout, unit registry): renders from
# worker threads take turns. One render is tens of milliseconds and holds the GIL most of that time anyway.
_RENDER_LOCK = threading.Lock()

_INK = "#1f2328"
_MUTED = "#59636e"
_GRID = "#d8dee4"
_LINE = "#0969da"
_FILL = "#ddf4ff"


def _decimals(low: float, high: float) -> int:
    """Decimal places for y labels: enough to tell ticks (about a fifth of the range apart) apart, and cents below
    1,000 (a price of 216 reads 216.00; equity of 10,000 needs no cents at chart size)."""
    step = (abs(high - low) or abs(high) or 1.0) / 5
    needed = max(0, -math.floor(math.log10(step)))
    return min(8, max(needed, 2 if max(abs(low), abs(high)) < 1000 else 0))


def _utc_text(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def render_png(series: Series, *, width_px: int = 800, height_px: int = 400) -> bytes:
    """A line chart of `series` as PNG bytes of exactly width_px x height_px, dark on light.

    Dates on the x axis are in UTC; the y axis is labelled with the unit; the footnote says "as of <UTC time>" and,
    when the prices are simulated, "simulated prices". An empty series draws "No data yet" over its window. The
    output is deterministic for the same input (no timestamps or version in the PNG metadata).
    """
    if not (MIN_PX <= width_px <= MAX_PX and MIN_PX <= height_px <= MAX_PX):
        raise InvalidInput(f"A chart is {MIN_PX} to {MAX_PX} pixels wide and high.")
    with _RENDER_LOCK:
        return _render(series, width_px, height_px)


def _render(series: Series, width_px: int, height_px: int) -> bytes:
    import io

    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    dpi = 100
    fig = Figure(figsize=(width_px / dpi, height_px / dpi), dpi=dpi, facecolor="white")
    canvas = FigureCanvasAgg(fig)
    scale = min(width_px / 800, height_px / 400) ** 0.5  # type sized for the 800x400 default, within reason
    small, normal, large = 8.5 * scale, 10 * scale, 12.5 * scale
    ax = fig.add_axes((0.1, 0.16, 0.86, 0.68))
    ax.set_facecolor("white")
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    for side in ("left", "bottom"):
        ax.spines[side].set_color(_MUTED)
    ax.tick_params(colors=_INK, labelsize=small)
    ax.grid(True, color=_GRID, linewidth=0.8)
    ax.set_axisbelow(True)

    times = [t for t, _ in series.points]
    # Decimal -> float only here, for drawing: pixels need no exactness, and no number leaves this function.
    values = [float(v) for _, v in series.points]

    # matplotlib.dates ships without annotations on these (mypy strict: no-untyped-call); the calls are plain.
    def num(t: datetime) -> float:
        return float(mdates.date2num(t))  # type: ignore[no-untyped-call]

    x = [num(t) for t in times]
    start = series.since or (times[0] if times else series.as_of - timedelta(days=1))
    end = series.until or (times[-1] if times else series.as_of)
    if times:
        start, end = min(start, times[0]), max(end, times[-1])
    if start >= end:
        start, end = start - timedelta(hours=1), end + timedelta(hours=1)
    ax.set_xlim(num(start), num(end))

    locator = mdates.AutoDateLocator(tz=UTC, minticks=3, maxticks=8)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator, tz=UTC, show_offset=False)  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(concise)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=6))
    ax.set_ylabel(series.unit, color=_INK, fontsize=normal)
    ax.set_xlabel("UTC", color=_MUTED, fontsize=small, loc="right")

    if values:
        low, high = min(values), max(values)
        places = _decimals(low, high)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.{places}f}"))
        ax.plot(x, values, color=_LINE, linewidth=1.8 * scale, marker="o" if len(values) == 1 else "", clip_on=False)
        if high > low:
            pad = (high - low) * 0.05
            ax.fill_between(x, values, low - pad, color=_FILL, linewidth=0)
            ax.set_ylim(low - pad, high + pad)
        last = series.points[-1][1]
        fig.text(0.96, 0.9, f"last {last:,.{places}f} {series.unit}", ha="right", color=_INK, fontsize=normal)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "No data yet", transform=ax.transAxes, ha="center", va="center", color=_MUTED, fontsize=large)

    title = series.title if len(series.title) <= 60 else series.title[:59] + "…"
    fig.text(0.1, 0.9, title, ha="left", color=_INK, fontsize=large, fontweight="bold")
    footnote = f"as of {_utc_text(series.as_of)}"
    if series.simulated:
        footnote += " · simulated prices"
    fig.text(0.1, 0.03, footnote, ha="left", color=_MUTED, fontsize=small)

    out = io.BytesIO()
    # Agg writes exactly figsize * dpi pixels (no bbox_inches="tight"); no Software/date metadata keeps it stable.
    canvas.print_png(out, metadata={"Software": None})  # type: ignore[no-untyped-call]
    return out.getvalue()


async def render_chart(series: Series, *, width_px: int = 800, height_px: int = 400) -> bytes:
    """render_png in a worker thread, for async callers: a render takes tens of milliseconds."""
    return await asyncio.to_thread(render_png, series, width_px=width_px, height_px=height_px)
