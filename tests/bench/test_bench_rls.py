"""`tradedesk bench rls --json --quick` as a user runs it: one JSON object with the keys reports rely on, and the
throwaway cluster gone afterwards.

No timing assertions here (DESIGN 9): the numbers are only checked for shape and internal consistency.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.app.procs import clean_env

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


def _postgres_using(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(folder) in arg for arg in cmdline) and "postgres" in (proc.info["name"] or ""):
            found.append(proc)
    return found


@pytest.mark.slow
def test_bench_rls_quick_prints_one_json_object_and_cleans_up(tmp_path: Path) -> None:
    env = clean_env(TRADEDESK_DATA_DIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", "rls", "--json", "--quick"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr

    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and proc.stdout == lines[0] + "\n", proc.stdout
    report = json.loads(lines[0])
    assert isinstance(report, dict)
    assert set(report) == {"bench", "results", "params"}
    assert report["bench"] == "rls"

    results, params = report["results"], report["params"]
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
    assert "loading" in proc.stderr
    assert _postgres_using(tmp_path) == []
    assert list((tmp_path / "bench").iterdir()) == []
