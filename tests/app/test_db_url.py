"""`tradedesk db-url` / `db-stop`: a URL to the embedded Postgres that asyncpg and psql accept, as the app's role."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import psutil
import pytest

from tests.app.procs import clean_env, kill_leftovers, leftovers, processes_for, run_cli

pytestmark = pytest.mark.slow

PSQL = shutil.which("psql") or ("/usr/bin/psql" if Path("/usr/bin/psql").exists() else None)


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_leftovers(path)


def postmaster_pid(data_dir: Path) -> int:
    """The pid of the running postmaster of this data dir (first line of postmaster.pid), checked against psutil."""
    pid = int((data_dir / "pg" / "postmaster.pid").read_text().splitlines()[0])
    assert psutil.pid_exists(pid)
    assert pid in {p.pid for p in processes_for(data_dir)}
    return pid


async def db_url(env: dict[str, str]) -> str:
    result = await asyncio.to_thread(run_cli, "db-url", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 1, f"db-url must print exactly one line on stdout:\n{result.stdout}"
    return lines[0]


async def test_db_url_connects_as_the_app_login_role_then_db_stop_stops_it(data_dir: Path) -> None:
    env = clean_env(TRADEDESK_DATA_DIR=str(data_dir))
    url = await db_url(env)
    assert url.startswith("postgresql://")
    pid = postmaster_pid(data_dir)

    conn = await asyncpg.connect(url)
    try:
        row = await conn.fetchrow(
            "SELECT current_user AS who, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user"
        )
    finally:
        await conn.close()
    assert row is not None
    assert row["who"] == "tradedesk"
    assert row["rolsuper"] is False, "db-url must not hand out a superuser"
    assert row["rolbypassrls"] is False

    # A second db-url while the server runs reuses it: same URL, same postmaster.
    assert await db_url(env) == url
    assert postmaster_pid(data_dir) == pid

    stopped = await asyncio.to_thread(run_cli, "db-stop", env=env)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == "embedded Postgres stopped"
    assert leftovers(data_dir) == []
    assert not (data_dir / "pg" / "postmaster.pid").exists()

    again = await asyncio.to_thread(run_cli, "db-stop", env=env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "embedded Postgres is not running"


async def test_psql_accepts_the_db_url(data_dir: Path) -> None:
    if PSQL is None:
        pytest.skip("psql is not installed (Debian: apt-get install postgresql-client); asyncpg is checked elsewhere")
    env = clean_env(TRADEDESK_DATA_DIR=str(data_dir))
    url = await db_url(env)
    try:
        result = await asyncio.to_thread(
            subprocess.run,
            [PSQL, url, "-X", "-Atc", "select 1"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env=env,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "1"
    finally:
        await asyncio.to_thread(run_cli, "db-stop", env=env)
    assert leftovers(data_dir) == []
