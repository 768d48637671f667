"""`tradedesk bench feed --json --quick` as a user runs it: one JSON object with the keys reports rely on.

No timing assertions (DESIGN 9): the numbers are checked for shape and consistency only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.app.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_feed_quick_prints_one_json_object(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "feed", "--json", "--quick"],
        cwd=ROOT,
        env=clean_env(TRADEDESK_DATA_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    [line] = proc.stdout.splitlines()
    report = json.loads(line)
    assert set(report) == {"bench", "results", "params"} and report["bench"] == "feed"
    results = report["results"]
    assert {"msgs_per_s", "baseline_msgs_per_s", "ratio", "e2e_msgs_per_s"} <= set(results)
    assert all(isinstance(results[k], int) and results[k] > 0 for k in ("msgs_per_s", "baseline_msgs_per_s"))
    assert results["ratio"] == pytest.approx(results["msgs_per_s"] / results["baseline_msgs_per_s"], rel=0.01)
    assert report["params"]["quick"] is True and report["params"]["messages"] == 50_000
