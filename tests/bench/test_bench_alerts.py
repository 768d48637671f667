"""`tradedesk bench alerts --json --quick`: one JSON object with the keys reports rely on, numbers consistent with
each other, and the index agreeing with the naive scan on the ticks both ran.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.alerts import World, build_index, run_index, run_naive
from tests.app.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]
RESULT_KEYS = {"ticks_per_s", "baseline_ticks_per_s", "ratio", "bytes_per_alert", "trigger_p99_ms"}


@pytest.mark.slow
def test_bench_alerts_quick_prints_one_json_object(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "alerts", "--json", "--quick"],
        cwd=ROOT,
        env=clean_env(TRADEDESK_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr

    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and proc.stdout == lines[0] + "\n", proc.stdout
    report = json.loads(lines[0])
    assert set(report) == {"bench", "results", "params"}
    assert report["bench"] == "alerts"

    results, params = report["results"], report["params"]
    assert set(results) >= RESULT_KEYS
    for key in RESULT_KEYS:
        assert isinstance(results[key], float | int) and results[key] > 0, key
    assert results["ratio"] == pytest.approx(results["ticks_per_s"] / results["baseline_ticks_per_s"], rel=1e-2)
    assert results["trigger_p50_ms"] <= results["trigger_p99_ms"]
    assert results["bytes_per_alert"] == pytest.approx(params["index_bytes"] / params["alerts"], abs=0.01)
    assert params["quick"] is True
    assert params["alerts"] == 100_000 and params["symbols"] == 500
    assert params["fired"] == 0 and params["mismatched_ticks"] == 0
    assert params["verified_ticks"] == params["baseline_ticks"] > 0
    assert params["trigger_ticks"] == params["trigger_notifications"] == 100
    assert "timing" in proc.stderr
    assert (tmp_path / "bench").is_dir() and not any((tmp_path / "bench").iterdir())  # the cluster was deleted


def test_index_and_naive_scan_agree_on_a_small_world() -> None:
    world = World(alerts=2_000, symbols=20, ticks=200, seed=7)
    index = build_index(world)
    indexed: list[int] = []
    assert run_index(index, world.ticks, indexed) == 0
    naive: list[int] = []
    assert run_naive(world, world.ticks, naive) == 0
    assert indexed == naive and len(index) == 2_000
