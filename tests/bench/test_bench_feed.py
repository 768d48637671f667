"""`tradedesk bench feed --json --quick` as a user runs it: one JSON object with the keys reports rely on.

No timing assertions (DESIGN 9): the numbers are checked for shape and consistency only.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bench.run import run_bench

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_feed_quick_prints_one_json_object(tmp_path: Path) -> None:
    results, params, _ = run_bench("feed", tmp_path)
    assert {"msgs_per_s", "baseline_msgs_per_s", "ratio", "e2e_msgs_per_s"} <= set(results)
    assert all(isinstance(results[k], int) and results[k] > 0 for k in ("msgs_per_s", "baseline_msgs_per_s"))
    assert results["ratio"] == pytest.approx(results["msgs_per_s"] / results["baseline_msgs_per_s"], rel=0.01)
    assert params["quick"] is True and params["messages"] == 50_000
