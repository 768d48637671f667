"""`tradedesk bench webhooks --json --quick` as a user runs it: one JSON object with the keys reports rely on, every
event applied exactly once, numbers that agree with each other, and the throwaway cluster gone.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

RESULT_KEYS = {
    "events_per_s",
    "distinct_events_per_s",
    "p50_ms",
    "p99_ms",
    "max_ms",
    "baseline_events_per_s",
    "baseline_p50_ms",
    "baseline_p99_ms",
    "ratio",
    "requests",
    "duplicates",
    "double_applied",
    "lost",
    "non_200",
    "exactly_once",
    "goal_met",
}
PARAM_KEYS = {
    "users",
    "concurrency",
    "rounds",
    "requests_per_round",
    "distinct_events",
    "duplicate_share",
    "warmup_events",
    "outcomes",
    "stripe_events_rows",
    "dms",
    "dms_expected",
    "db_pool",
    "db_sessions",
    "cpu_ms_per_request",
    "baseline_cpu_ms_per_request",
    "goal_events_per_s",
    "goal_p99_ms",
    "loadavg_before",
    "loadavg_after",
    "quick",
    "postgres",
}


@pytest.mark.slow
def test_bench_webhooks_quick_applies_every_event_exactly_once(tmp_path: Path) -> None:
    results, params, stderr = run_bench("webhooks", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert set(params) >= PARAM_KEYS
    assert params["quick"] is True and str(params["postgres"]).startswith("18")

    # Exactly once: nothing applied twice, nothing lost, every answer 200.
    assert results["double_applied"] == 0
    assert results["lost"] == 0 and results["non_200"] == 0
    assert results["exactly_once"] is True
    requests = params["rounds"] * params["requests_per_round"]
    assert results["requests"] == requests
    assert results["duplicates"] == requests - params["distinct_events"]
    assert results["duplicates"] == pytest.approx(params["duplicate_share"] * requests, abs=1)
    distinct = params["distinct_events"] + params["warmup_events"]
    assert params["outcomes"] == {"applied": distinct, "duplicate": results["duplicates"]}
    assert params["stripe_events_rows"] == distinct
    assert params["dms"] == params["dms_expected"] >= params["users"]  # a welcome each, one per failed payment

    # Numbers agree with each other.
    for prefix in ("", "baseline_"):
        assert 0 < results[f"{prefix}p50_ms"] <= results[f"{prefix}p99_ms"], prefix
    assert results["p99_ms"] <= results["max_ms"]
    assert results["events_per_s"] > results["distinct_events_per_s"] > 0
    assert results["ratio"] == pytest.approx(results["events_per_s"] / results["baseline_events_per_s"], rel=1e-2)
    assert results["goal_met"] is (
        results["events_per_s"] >= params["goal_events_per_s"] and results["p99_ms"] <= params["goal_p99_ms"]
    )
    assert set(params["cpu_ms_per_request"]) == {"webhook_app", "sender_and_stub", "postgres"}

    # Progress went to stderr; the throwaway cluster is gone.
    assert "warming up" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
