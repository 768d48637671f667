"""`tradedesk bench live --json --quick` as a user runs it: one JSON object with the keys reports rely on, numbers that
agree with each other, and the throwaway cluster gone.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

RESULT_KEYS = {
    "tick_p50_ms",
    "tick_p99_ms",
    "clients",
    "server_cpu_pct",
    "overview_rps",
    "baseline_rps",
    "ratio",
    "prices_received",
    "ticks_published",
    "dropped_sockets",
    "http_errors",
    "goal_met",
}


@pytest.mark.slow
def test_bench_live_quick_reports_tick_latency_and_overview_throughput(tmp_path: Path) -> None:
    results, params, stderr = run_bench("live", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert params["quick"] is True and params["clients_process"].startswith("separate")
    assert results["clients"] == params["clients"] > 0
    # Each tick reaches the sockets holding its symbol (clients / symbols of them), plus a snapshot price each.
    assert (
        0
        < results["prices_received"]
        <= results["ticks_published"] * results["clients"] // params["symbols"] + results["clients"]
    )
    assert 0 < results["tick_p50_ms"] <= results["tick_p99_ms"]
    assert results["server_cpu_pct"] > 0
    assert results["overview_rps"] > 0 and results["baseline_rps"] > 0 and results["http_errors"] == 0
    assert results["ratio"] == pytest.approx(results["overview_rps"] / results["baseline_rps"], rel=1e-2)
    assert results["dropped_sockets"] == 0
    assert "connecting" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
