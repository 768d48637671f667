"""`tradedesk bench commands --json --quick` as a user runs it: one JSON object with the keys reports rely on, numbers
that agree with each other, and the throwaway cluster gone afterwards.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

RESULT_KEYS = {
    "p50_ms",
    "p99_ms",
    "portfolio_p50_ms",
    "portfolio_p99_ms",
    "buy_p50_ms",
    "buy_p99_ms",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "ratio",
    "max_ms",
    "deferred",
    "baseline_deferred",
    "late",
    "baseline_late",
    "goal_met",
}
PARAM_KEYS = {
    "interactions_per_command",
    "portfolio_n",
    "buy_n",
    "baseline_n",
    "warmup_rounds",
    "positions",
    "goal_p99_ms",
    "loadavg_before",
    "loadavg_after",
    "quick",
    "postgres",
}


@pytest.mark.slow
def test_bench_commands_quick_prints_one_json_object_and_cleans_up(tmp_path: Path) -> None:
    results, params, stderr = run_bench("commands", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert set(params) >= PARAM_KEYS
    assert params["quick"] is True and str(params["postgres"]).startswith("18")
    n = params["interactions_per_command"]
    assert n > 0 and params["portfolio_n"] == params["buy_n"] == params["baseline_n"] == n
    assert params["positions"] == 50

    # Percentiles are positive and ordered; the overall ones lie within the two commands' own.
    for prefix in ("", "portfolio_", "buy_", "baseline_"):
        assert 0 < results[f"{prefix}p50_ms"] <= results[f"{prefix}p99_ms"], prefix
    assert results["p99_ms"] <= results["max_ms"]
    assert min(results["portfolio_p50_ms"], results["buy_p50_ms"]) <= results["p50_ms"]
    assert results["p50_ms"] <= max(results["portfolio_p50_ms"], results["buy_p50_ms"])
    assert results["p99_ms"] <= max(results["portfolio_p99_ms"], results["buy_p99_ms"])
    assert results["ratio"] == pytest.approx(results["p99_ms"] / results["baseline_p99_ms"], rel=1e-2)
    assert results["goal_met"] is (results["p99_ms"] <= params["goal_p99_ms"] and results["late"] == 0)
    assert isinstance(results["deferred"], int) and 0 <= results["deferred"] <= 2 * n
    assert isinstance(results["baseline_deferred"], int) and 0 <= results["baseline_deferred"] <= n
    assert isinstance(results["late"], int) and 0 <= results["late"] <= 2 * n
    assert isinstance(results["baseline_late"], int) and 0 <= results["baseline_late"] <= n

    # Progress went to stderr, and the throwaway cluster is gone: no process, no folder.
    assert "warming up" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
