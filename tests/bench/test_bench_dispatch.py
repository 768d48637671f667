"""`tradedesk bench dispatch --json --quick` as a user runs it: one JSON object with the keys reports rely on, numbers
that agree with each other, and the throwaway cluster gone afterwards.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import postgres_using, run_bench

RESULT_KEYS = {
    "notifications_per_s",
    "http_429",
    "requests_per_notification",
    "peak_requests_per_s",
    "baseline_notifications_per_s",
    "baseline_http_429",
    "baseline_peak_requests_per_s",
}
PARAM_KEYS = {
    "notifications",
    "users",
    "limit_per_s",
    "pace_per_s",
    "paced_wall_s",
    "baseline_wall_s",
    "paced_requests",
    "baseline_requests",
    "quick",
    "postgres",
}


@pytest.mark.slow
def test_bench_dispatch_quick_prints_one_json_object_and_cleans_up(tmp_path: Path) -> None:
    results, params, stderr = run_bench("dispatch", tmp_path)
    assert set(results) >= RESULT_KEYS
    assert set(params) >= PARAM_KEYS
    assert params["quick"] is True and str(params["postgres"]).startswith("18")
    assert params["notifications"] == params["baseline_notifications"] == params["users"] == 300

    # Rates are what the counts and wall times say.
    assert results["notifications_per_s"] == pytest.approx(params["notifications"] / params["paced_wall_s"], rel=1e-2)
    assert results["baseline_notifications_per_s"] == pytest.approx(
        params["baseline_notifications"] / params["baseline_wall_s"], rel=1e-2
    )
    # DM channels are cached: one request per notification, each accepted once; the fake never let more than its
    # limit through in any second, for either dispatcher.
    assert params["paced_requests"] == params["notifications"] and results["requests_per_notification"] == 1
    assert params["baseline_requests"] == params["baseline_notifications"]
    assert 0 < results["peak_requests_per_s"] <= params["limit_per_s"]
    assert 0 < results["baseline_peak_requests_per_s"] <= params["limit_per_s"]
    assert isinstance(results["http_429"], int) and results["http_429"] >= 0
    assert isinstance(results["baseline_http_429"], int) and results["baseline_http_429"] >= 0
    assert params["pace_per_s"] < params["limit_per_s"]

    # Progress went to stderr, and the throwaway cluster is gone: no process, no folder.
    assert "baseline" in stderr
    assert postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
