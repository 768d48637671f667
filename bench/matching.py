"""`tradedesk bench matching`: ticks per second through the worker's resting-order index, against a naive scan.

In process, no database: 100k resting orders over 1,000 symbols in `core.orders.book.OrderBook` (buy and sell limits,
stops and stop-limits, each placed up to 5% away from its symbol's price on the side where it waits, some right next
to it), then a seeded random walk of ticks over those symbols. Each tick goes through `OrderBook.take_triggered`;
every order it hands back is re-added 0.2% to 5% away from the tick's price (same id, side and type), so the book
stays at 100k orders. Ticks/s counts both, the take and the re-adds, over the whole stream.

The baseline, in the same run, is what a naive matcher does: one list of all resting orders, each checked against
every tick (symbol, then its trigger price), with the orders it takes replaced in place by the same fresh ones. It
is too slow for the whole stream, so it runs on a prefix of it; both implementations must take exactly the same
orders on every tick of that prefix, or the bench fails. `ratio = ticks_per_s / baseline_ticks_per_s`.

Fresh levels are deterministic: the orders a tick takes are re-added in id order, each drawing the next offset from
one seeded sequence, so the two implementations evolve identically as long as they agree.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from operator import attrgetter
from typing import Any
from uuid import UUID

from bench import BenchResult
from core.config import Settings
from core.orders.book import OrderBook, RestingOrder

SEED = 20261125
SYMBOLS = 1_000
ORDERS = 100_000
GOAL_TICKS_PER_S = 200_000
GOAL_RATIO = 100
MIN_OFFSET_BPS, MAX_OFFSET_BPS = 20, 500  # how far from the price an order is (re-)placed: 0.2% to 5%
START_MIN_OFFSET_BPS = 1  # the starting book also has orders right next to the price, so the prefix triggers some
STOP_LIMIT_BAND_BPS = 50  # a stop-limit's limit is 0.5% beyond its stop
MAX_STEP_BPS = 8  # a tick moves its symbol's price by at most 0.08%

_KINDS = [("buy", "limit"), ("sell", "limit"), ("buy", "stop"), ("sell", "stop"), ("buy", "stop_limit"),
          ("sell", "stop_limit")]  # fmt: skip

Tick = tuple[str, Decimal, int]  # symbol, price, price in cents
_by_id = attrgetter("id")


def _cents(value: int) -> Decimal:
    return Decimal(value).scaleb(-2)


def place(oid: UUID, symbol: str, side: str, type_: str, cents: int, offset_bps: int) -> RestingOrder:
    """An order resting `offset_bps` away from `cents` on the side where it waits (a tick's worth at least)."""
    away = max(1, cents * offset_bps // 10_000)
    # Buy limits and sell stops wait below the price; sell limits and buy stops above.
    below = (side == "buy") == (type_ == "limit")
    level = cents - away if below else cents + away
    level = max(1, level)
    if type_ == "limit":
        return RestingOrder(oid, symbol, side, type_, _cents(level), None)
    if type_ == "stop":
        return RestingOrder(oid, symbol, side, type_, None, _cents(level))
    band = max(1, level * STOP_LIMIT_BAND_BPS // 10_000)
    limit = level + band if side == "buy" else max(1, level - band)
    return RestingOrder(oid, symbol, side, type_, _cents(limit), _cents(level))


def refresh(order: RestingOrder, cents: int, offset_bps: int) -> RestingOrder:
    """The same order placed afresh away from the price `cents`."""
    return place(order.id, order.symbol, order.side, order.type, cents, offset_bps)


def acts(order: RestingOrder, price: Decimal) -> bool:
    """The naive rule, written out per order type (independently of the index's placement)."""
    if order.type == "market":
        return True
    if order.type == "limit" or (order.type == "stop_limit" and order.triggered):
        assert order.limit_price is not None
        return price <= order.limit_price if order.side == "buy" else price >= order.limit_price
    assert order.stop_price is not None
    return price >= order.stop_price if order.side == "buy" else price <= order.stop_price


class World:
    """The seeded universe: symbols, their starting prices, the resting orders, the tick stream and the offsets."""

    def __init__(self, ticks: int, seed: int = SEED) -> None:
        rng = random.Random(seed)
        self.symbols = [f"S{i:04d}" for i in range(SYMBOLS)]
        # Log-uniform starting prices between $5 and $2,000, in cents.
        start = {s: round(100 * 5 * 400 ** rng.random()) for s in self.symbols}
        self.orders: list[RestingOrder] = []
        for i in range(ORDERS):
            symbol = self.symbols[i % SYMBOLS]
            side, type_ = _KINDS[rng.randrange(len(_KINDS))]
            offset = rng.randint(START_MIN_OFFSET_BPS, MAX_OFFSET_BPS)
            self.orders.append(place(UUID(int=i + 1), symbol, side, type_, start[symbol], offset))
        self.offsets = [rng.randint(MIN_OFFSET_BPS, MAX_OFFSET_BPS) for _ in range(1 << 16)]
        price = dict(start)
        self.ticks: list[Tick] = []
        for _ in range(ticks):
            symbol = self.symbols[rng.randrange(SYMBOLS)]
            cents = price[symbol]
            step = rng.randint(-MAX_STEP_BPS, MAX_STEP_BPS)
            if step:
                move = max(1, cents * abs(step) // 10_000)
                cents = max(100, cents + (move if step > 0 else -move))
            price[symbol] = cents
            self.ticks.append((symbol, _cents(cents), cents))


def build_book(orders: Sequence[RestingOrder]) -> OrderBook:
    book = OrderBook()
    for order in orders:
        book.add(order)
    return book


def run_index(
    book: OrderBook, ticks: Sequence[Tick], offsets: Sequence[int], record: list[tuple[UUID, ...]] | None = None
) -> int:
    """Every tick through the index, re-adding what it takes. Returns how many orders were taken."""
    take, add, mask = book.take_triggered, book.add, len(offsets) - 1
    drawn = 0
    for symbol, price, cents in ticks:
        taken = take(symbol, price)
        if taken:
            taken.sort(key=_by_id)
            for order in taken:
                add(refresh(order, cents, offsets[drawn & mask]))
                drawn += 1
            if record is not None:
                record.append(tuple(o.id for o in taken))
        elif record is not None:
            record.append(())
    return drawn


def run_naive(
    orders: list[RestingOrder], ticks: Sequence[Tick], offsets: Sequence[int], record: list[tuple[UUID, ...]]
) -> int:
    """Every tick against every resting order of every symbol; what it takes is replaced in place."""
    mask = len(offsets) - 1
    drawn = 0
    for symbol, price, cents in ticks:
        hits = [i for i, o in enumerate(orders) if o.symbol == symbol and acts(o, price)]
        hits.sort(key=lambda i: orders[i].id)
        for i in hits:
            orders[i] = refresh(orders[i], cents, offsets[drawn & mask])
            drawn += 1
        record.append(tuple(orders[i].id for i in hits))
    return drawn


def bench_matching(settings: Settings, quick: bool, progress: Callable[[str], None]) -> BenchResult:
    del settings  # in process: no database, no settings
    n_ticks = 50_000 if quick else 500_000
    n_baseline = 50 if quick else 400
    started = time.perf_counter()

    progress(f"generating {ORDERS:,} resting orders over {SYMBOLS:,} symbols and {n_ticks:,} ticks (seed {SEED})")
    world = World(n_ticks)
    prefix = world.ticks[:n_baseline]

    progress(f"checking both implementations take the same orders on the first {n_baseline:,} ticks")
    indexed: list[tuple[UUID, ...]] = []
    run_index(build_book(world.orders), prefix, world.offsets, indexed)
    naive: list[tuple[UUID, ...]] = []
    t0 = time.perf_counter()
    naive_taken = run_naive(list(world.orders), prefix, world.offsets, naive)
    baseline_s = time.perf_counter() - t0
    mismatches = [i for i, (a, b) in enumerate(zip(indexed, naive, strict=True)) if a != b]
    if mismatches:
        i = mismatches[0]
        raise RuntimeError(
            f"bench matching: on tick {i} ({prefix[i][0]} at {prefix[i][1]}) the index took {len(indexed[i])}"
            f" orders and the scan {len(naive[i])}; {len(mismatches)} of {n_baseline} ticks differ"
        )
    if naive_taken == 0:
        raise RuntimeError(f"bench matching: nothing triggered in the first {n_baseline} ticks: nothing was compared")

    progress(f"building the index of {ORDERS:,} orders")
    t0 = time.perf_counter()
    book = build_book(world.orders)
    build_s = time.perf_counter() - t0
    progress(f"timing {n_ticks:,} ticks through the index")
    t0 = time.perf_counter()
    taken = run_index(book, world.ticks, world.offsets)
    index_s = time.perf_counter() - t0
    if len(book) != ORDERS:
        raise RuntimeError(f"bench matching: the book holds {len(book)} orders after the run, not {ORDERS}")

    ticks_per_s = n_ticks / index_s
    baseline_ticks_per_s = n_baseline / baseline_s
    results: dict[str, Any] = {
        "ticks_per_s": round(ticks_per_s, 1),
        "baseline_ticks_per_s": round(baseline_ticks_per_s, 1),
        "ratio": round(ticks_per_s / baseline_ticks_per_s, 1),
        "us_per_tick": round(1e6 * index_s / n_ticks, 3),
        "baseline_us_per_tick": round(1e6 * baseline_s / n_baseline, 1),
        "taken_per_tick": round(taken / n_ticks, 4),
    }
    params: dict[str, Any] = {
        "orders": ORDERS,
        "symbols": SYMBOLS,
        "ticks": n_ticks,
        "baseline_ticks": n_baseline,
        "verified_ticks": len(naive),
        "mismatched_ticks": len(mismatches),
        "taken": taken,
        "baseline_taken": naive_taken,
        "book_size_after": len(book),
        "build_s": round(build_s, 3),
        "seed": SEED,
        "quick": quick,
        "goal_ticks_per_s": GOAL_TICKS_PER_S,
        "goal_ratio": GOAL_RATIO,
        "total_s": round(time.perf_counter() - started, 1),
    }
    met = "met" if ticks_per_s >= GOAL_TICKS_PER_S else "NOT met"
    met_ratio = "met" if results["ratio"] >= GOAL_RATIO else "NOT met"
    table = [
        ("book", f"{ORDERS:,} resting orders over {SYMBOLS:,} symbols (limits, stops, stop-limits)"),
        ("stream", f"{n_ticks:,} random-walk ticks, {results['taken_per_tick']:.3f} orders taken (and re-added)"
                   " per tick"),
        ("index ticks/s", f"{ticks_per_s:,.0f}  ({results['us_per_tick']:.2f} µs/tick; goal >= {GOAL_TICKS_PER_S:,}:"
                          f" {met})"),
        ("naive scan ticks/s", f"{baseline_ticks_per_s:,.1f}  ({results['baseline_us_per_tick']:,.0f} µs/tick,"
                               f" on the first {n_baseline:,} ticks)"),
        ("ratio", f"{results['ratio']:,.0f}x  (goal >= {GOAL_RATIO}x: {met_ratio})"),
        ("verified", f"same orders taken on all {len(naive):,} ticks of the prefix ({naive_taken} taken)"),
        ("index build", f"{build_s:.2f} s for {ORDERS:,} orders"),
        ("total", f"{params['total_s']} s"),
    ]  # fmt: skip
    return BenchResult("matching", results, params, table)
