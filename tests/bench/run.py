"""Running a bench the way a user does (`tradedesk bench NAME --json --quick`) and checking its output contract."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import psutil

from tests.app.procs import clean_env

ROOT = Path(__file__).resolve().parents[2]


def run_bench(name: str, data_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Run the bench quick; require exactly one JSON object on stdout; return its results, params and stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "app.cli", "bench", name, "--json", "--quick"],
        cwd=ROOT,
        env=clean_env(TRADEDESK_DATA_DIR=str(data_dir)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and proc.stdout == lines[0] + "\n", proc.stdout
    report = json.loads(lines[0])
    assert isinstance(report, dict) and set(report) == {"bench", "results", "params"}
    assert report["bench"] == name
    return report["results"], report["params"], proc.stderr


def postgres_using(folder: Path) -> list[psutil.Process]:
    """Postgres processes whose command line mentions `folder` (a bench's throwaway cluster left behind)."""
    found = []
    for proc in psutil.process_iter(attrs=["name", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(str(folder) in arg for arg in cmdline) and "postgres" in (proc.info["name"] or ""):
            found.append(proc)
    return found
