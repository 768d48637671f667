"""`tradedesk bench orders --json --quick` as a user runs it: one JSON object with the keys reports rely on, books
that add up, and the throwaway cluster gone afterwards.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"orders_per_s", "p99_ms", "p50_ms", "floor_per_s", "floor_p50_ms", "floor_p99_ms", "ratio"}
PARAM_KEYS = {"users", "orders", "floor_txns", "quick", "postgres", "synchronous_commit", "orders_submitted"}


@pytest.mark.slow
def test_bench_orders_quick_prints_one_json_object_and_cleans_up(tmp_path: Path) -> None:
    results, params, stderr = run_bench("orders", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert set(params) >= PARAM_KEYS
    for key in RESULT_KEYS:
        assert isinstance(results[key], float | int) and results[key] > 0, key
    assert results["ratio"] == pytest.approx(results["orders_per_s"] / results["floor_per_s"], rel=1e-3)
    assert results["p50_ms"] <= results["p99_ms"]
    assert results["floor_p50_ms"] <= results["floor_p99_ms"]

    # 8 users, synchronous commits, and books that add up: every order submitted (warm-up included) is in the
    # database, filled once, audited once (naming its fill); cash equals the ledger and positions equal the fills.
    assert params["quick"] is True
    assert params["users"] == 8 and params["pool_size"] == 8
    assert params["synchronous_commit"] == "on"
    assert str(params["postgres"]).startswith("18")
    assert 1_900 <= params["orders"] <= 2_000 and params["floor_txns"] == params["orders"]
    submitted = params["orders_submitted"]
    assert submitted == params["orders"] + params["warmup_orders"]
    assert params["orders_in_db"] == params["orders_filled"] == params["fills_in_db"] == submitted
    assert params["audit_rows"] == params["audited_fills"] == submitted
    assert params["portfolios_checked"] == 8
    assert params["cash_mismatches"] == 0 and params["position_mismatches"] == 0
    assert params["price_refreshes"] >= 1

    # Progress went to stderr, and the throwaway cluster is gone: no process, no folder.
    assert "warming up" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
