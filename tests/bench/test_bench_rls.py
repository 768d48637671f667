"""`tradedesk bench rls --json --quick` as a user runs it: one JSON object with the keys reports rely on, and the
throwaway cluster gone afterwards.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {
    "rls_p50_ms",
    "baseline_p50_ms",
    "ratio",
    "rls_p99_ms",
    "baseline_p99_ms",
    "scope_open_p50_ms",
    "plain_txn_p50_ms",
}
PARAM_KEYS = {"rows", "users", "queries", "quick", "postgres"}


@pytest.mark.slow
def test_bench_rls_quick_prints_one_json_object_and_cleans_up(tmp_path: Path) -> None:
    results, params, stderr = run_bench("rls", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert set(params) >= PARAM_KEYS
    for key in RESULT_KEYS:
        assert isinstance(results[key], float | int) and results[key] > 0, key
    assert results["ratio"] == pytest.approx(results["rls_p50_ms"] / results["baseline_p50_ms"], abs=2e-3)
    assert params["quick"] is True
    assert params["rows"] == 100_000 and params["users"] == 1_000
    assert params["queries"] > 0
    assert str(params["postgres"]).startswith("18")

    # Progress went to stderr, and the throwaway cluster is gone: no process, no folder.
    assert "loading" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
