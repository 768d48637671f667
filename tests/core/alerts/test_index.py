"""The alert index against a brute-force scan of the crossing rule (DESIGN section 5), in process."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.alerts.index import SCALE, AlertIndex, Entry, scaled, scaled_threshold

SYMBOLS = ["AAA", "BBB", "CCC"]


def brute_force(alerts: dict[bytes, Entry], last: dict[str, Decimal], symbol: str, price: Decimal) -> set[bytes]:
    """Every alert of `symbol` whose threshold the move from the last price to `price` crosses, rule as written."""
    prev = last.get(symbol)
    if prev is None:
        return set()
    fired = set()
    for key, e in alerts.items():
        if e.symbol != symbol:
            continue
        t = Decimal(e.threshold) / SCALE
        if (e.direction == "above" and prev < t <= price) or (e.direction == "below" and price <= t < prev):
            fired.add(key)
    return fired


prices = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal(50), places=9)
thresholds = st.integers(min_value=1, max_value=50 * SCALE)
ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(SYMBOLS), st.sampled_from(["above", "below"]), thresholds),
        st.tuples(st.just("tick"), st.sampled_from(SYMBOLS), prices),
        st.tuples(st.just("remove"), st.integers(min_value=0, max_value=200)),
    ),
    max_size=120,
)


@settings(max_examples=300, deadline=None)
@given(ops=ops, start=st.dictionaries(st.sampled_from(SYMBOLS), prices))
def test_the_index_fires_exactly_what_a_scan_of_the_crossing_rule_fires(
    ops: list[tuple], start: dict[str, Decimal]
) -> None:
    index = AlertIndex()
    alerts: dict[bytes, Entry] = {}
    last = dict(start)
    for symbol, price in start.items():
        index.set_price(symbol, *scaled(price))
    serial = 0
    for op in ops:
        if op[0] == "add":
            _, symbol, direction, threshold = op
            serial += 1
            entry = Entry(symbol, direction, threshold, serial.to_bytes(16, "big"), 0, -1, 0)
            alerts[entry.id] = entry
            index.add(entry)
        elif op[0] == "remove":
            if alerts:
                key = sorted(alerts)[op[1] % len(alerts)]
                entry = alerts.pop(key)
                if op[1] % 2:
                    assert index.remove(entry.symbol, entry.direction, entry.threshold, key)
                else:
                    assert index.discard(key)
        else:
            _, symbol, price = op
            expected = brute_force(alerts, last, symbol, price)
            got = index.crossed(symbol, *scaled(price))
            assert {e.id for e in got} == expected
            assert all(alerts[e.id] == e for e in got)
            for e in got:
                del alerts[e.id]
            last[symbol] = price
        assert len(index) == len(alerts)


def test_scaling_is_exact() -> None:
    assert scaled(Decimal("1.5")) == (150_000_000, 150_000_000)
    assert scaled(Decimal("1.000000005")) == (100_000_000, 100_000_001)
    assert scaled_threshold(Decimal("10000000000")) == 10**18
    with pytest.raises(ValueError, match="decimal places"):
        scaled_threshold(Decimal("1.000000001"))


def test_memory_is_arrays_not_objects() -> None:
    index = AlertIndex()
    index.load(
        Entry(f"S{i % 100}", "above" if i % 2 else "below", 10**8 + i, i.to_bytes(16, "big"), 0, -1, 0)
        for i in range(100_000)
    )
    assert len(index) == 100_000
    assert index.nbytes() / len(index) < 64
