"""`tradedesk bench matching --json --quick`: one JSON object with the keys reports rely on, and both
implementations agreeing on every tick they both ran.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path
from uuid import UUID

import pytest

from bench.matching import ORDERS, World, build_book, run_index, run_naive
from tests.bench.run import run_bench

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"ticks_per_s", "baseline_ticks_per_s", "ratio", "us_per_tick", "baseline_us_per_tick"}


@pytest.mark.slow
def test_bench_matching_quick_prints_one_json_object(tmp_path: Path) -> None:
    results, params, stderr = run_bench("matching", tmp_path)
    assert set(results) >= RESULT_KEYS
    for key in RESULT_KEYS:
        assert isinstance(results[key], float | int) and results[key] > 0, key
    assert results["ratio"] == pytest.approx(results["ticks_per_s"] / results["baseline_ticks_per_s"], rel=1e-3)
    assert results["us_per_tick"] == pytest.approx(1e6 / results["ticks_per_s"], rel=1e-2)
    assert params["quick"] is True
    assert params["orders"] == 100_000 and params["symbols"] == 1_000
    assert params["book_size_after"] == 100_000
    assert params["verified_ticks"] == params["baseline_ticks"] > 0
    assert params["mismatched_ticks"] == 0
    assert params["baseline_taken"] > 0  # the comparison covered ticks that took orders
    assert 0 < params["baseline_ticks"] < params["ticks"]
    assert "timing" in stderr
    assert not (tmp_path / "bench").exists()  # no database: nothing written


def test_index_and_naive_scan_agree_tick_by_tick() -> None:
    # The same check the bench makes, in process, on a short stream: per tick, the same orders, in the same order.
    world = World(ticks=300, seed=7)
    book = build_book(world.orders)
    indexed: list[tuple[UUID, ...]] = []
    taken = run_index(book, world.ticks, world.offsets, indexed)
    naive: list[tuple[UUID, ...]] = []
    naive_taken = run_naive(list(world.orders), world.ticks, world.offsets, naive)
    assert taken == naive_taken > 0
    assert indexed == naive
    assert len(book) == ORDERS
