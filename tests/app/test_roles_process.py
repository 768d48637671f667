"""`tradedesk web`, `tradedesk worker` and `tradedesk bot` as commands, and web plus worker as two real processes on
one data dir (one embedded Postgres, shared)."""

from __future__ import annotations

import asyncio
import re
import signal
import time
from datetime import timedelta
from pathlib import Path

import pytest

from app import __version__
from tests.app.procs import Runs, Tradedesk, clean_env, free_port, run_cli, wait_healthy
from tests.app.test_cli_errors import assert_one_error_line
from tests.app.test_run_process import (
    _last_prices,
    _trade_against_the_sim,
    assert_exits_cleanly,
    assert_stops_cleanly,
    fresh_price_url,
)


@pytest.mark.parametrize("command", ["web", "worker", "bot"])
def test_each_role_has_a_command_with_help(command: str) -> None:
    result = run_cli(command, "--help", env=clean_env())
    assert result.returncode == 0, result.stderr
    assert f"usage: tradedesk {command}" in result.stdout
    assert "Migrations: applied at start under an advisory lock" in " ".join(result.stdout.split())


def test_the_command_list_names_the_roles() -> None:
    result = run_cli("--help", env=clean_env())
    assert result.returncode == 0, result.stderr
    for command in ("run", "web", "worker", "bot"):
        assert re.search(rf"^\s+{command}\s+\S", result.stdout, re.MULTILINE), result.stdout


def test_bot_without_discord_token_fails_with_a_clear_message(tmp_path: Path) -> None:
    where = tmp_path / "data"
    result = run_cli("bot", env=clean_env(TRADEDESK_DATA_DIR=str(where)), timeout=30)
    line = assert_one_error_line(result, "bot")
    assert "DISCORD_TOKEN is not set" in line and "tradedesk bot" in line, line
    assert not where.exists(), "nothing may be created before the configuration is known to be usable"


def _wait_for(td: Tradedesk, pattern: str, within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not re.search(pattern, td.log):
        assert td.proc.poll() is None, f"exited with {td.proc.returncode}; log:\n{td.log}"
        assert time.monotonic() < deadline, f"no {pattern!r} in the log within {within:g}s; log:\n{td.log}"
        time.sleep(0.1)


@pytest.mark.slow
def test_web_and_worker_as_two_processes_on_one_data_dir(runs: Runs, data_dir: Path) -> None:
    """The web process serves /healthz with no feed of its own; the worker streams the sim and its matcher fills a
    resting paper order placed through core; both stop cleanly and leave no postgres behind."""
    worker = runs.start(0, "worker", TRADEDESK_SIM_TICKS_PER_S="200")
    _wait_for(worker, r"ready \(worker\)")
    assert "tradedesk.worker: this process is the leader" in worker.log
    assert "tradedesk.scheduler: this process is the leader" in worker.log
    assert re.search(r"market feed: SIMULATED prices from the local sim exchange", worker.log), worker.log

    web = runs.start(free_port(), "web")
    body, _ = wait_healthy(web, timeout=60)
    assert body == {"status": "ok", "db": "ok", "version": __version__}, body  # no feed or bot in this process
    assert "migrations: 0 applied" in web.log, web.log  # the worker applied them
    assert "market feed" not in web.log and "scheduler" not in web.log, web.log

    market, limit, actor = asyncio.run(_trade_against_the_sim(fresh_price_url(data_dir, worker)))
    assert market.status == "filled"
    assert limit.status == "filled", f"the resting limit never filled; worker log:\n{worker.log}"
    assert actor == "system:broker"
    assert re.search(rf"matching: filled {limit.side} BTC-USD {limit.id}", worker.log), worker.log

    assert_exits_cleanly(web)  # the worker still uses the embedded Postgres: it stays up
    assert worker.proc.poll() is None, worker.log
    assert_stops_cleanly(worker, signal.SIGTERM, data_dir)


@pytest.mark.slow
def test_a_standby_worker_takes_over_when_the_leader_is_killed(runs: Runs, data_dir: Path) -> None:
    """kill -9 of the leading worker: Postgres ends its session, the standby takes the market feed and the scheduler
    within the retry period, and last_prices is fresh again from the new leader's sim exchange."""
    first = runs.start(0, "worker")
    _wait_for(first, r"ready \(worker\)")
    second = runs.start(0, "worker")
    _wait_for(second, r"ready \(worker\)")
    assert "market feed: another worker runs it for this database" in second.log, second.log
    assert "scheduler: another worker runs the jobs for this database" in second.log, second.log

    first.proc.kill()
    assert first.wait(10) == -signal.SIGKILL
    killed_at = time.monotonic()
    _wait_for(second, r"tradedesk\.worker: this process is the leader", within=30)
    _wait_for(second, r"tradedesk\.scheduler: this process is the leader", within=30)
    took = time.monotonic() - killed_at
    assert took < 20, f"took {took:.1f}s (retry every ~5 s); log:\n{second.log}"
    _wait_for(second, r"market feed: streaming \d+ instrument", within=30)
    assert re.search(r"market feed: SIMULATED prices", second.log), second.log

    result = run_cli("db-url", env=clean_env(TRADEDESK_DATA_DIR=str(data_dir)))
    assert result.returncode == 0, result.stderr
    url = result.stdout.strip()
    deadline = time.monotonic() + 30
    while not any(r["age"] < timedelta(seconds=3) for r in asyncio.run(_last_prices(url))):
        assert time.monotonic() < deadline, f"no fresh price from the new leader; log:\n{second.log}"
        time.sleep(0.2)
    assert_stops_cleanly(second, signal.SIGTERM, data_dir)
