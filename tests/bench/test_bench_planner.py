"""`tradedesk bench planner --json`: one JSON object with accuracy and n (DESIGN 9), the baseline and the misses."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.planner import load_cases
from tests.bench.run import run_bench


@pytest.mark.slow
def test_bench_planner_prints_one_json_object(tmp_path: Path) -> None:
    results, params, stderr = run_bench("planner", tmp_path)
    assert set(results) >= {"accuracy", "n", "baseline_accuracy", "ratio", "misses"}
    assert results["n"] == len(load_cases()) >= 150
    assert results["accuracy"] >= 0.95
    assert 0 < results["baseline_accuracy"] < results["accuracy"]
    assert results["ratio"] == pytest.approx(results["accuracy"] / results["baseline_accuracy"], rel=1e-2)
    assert len(results["misses"]) == round((1 - results["accuracy"]) * results["n"])
    assert params["cases"] == "tests/tools/planner_cases.json"
    assert "labelled utterances" in stderr
    assert not (tmp_path / "bench").exists()  # no database: nothing written
