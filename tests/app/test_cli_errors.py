"""Bad input to the real `tradedesk` command: one clear error line, exit code 2, no traceback, nothing half-created."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.app.procs import clean_env, free_port, kill_leftovers, leftovers, run_cli

ERROR_PREFIX = "tradedesk: error:"
# What `tradedesk run` may log before it fails: its own INFO lines ("starting", which default is in use).
_RUN_INFO_LINE = re.compile(r"^\S+ INFO +[\w.]+: ")
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def assert_one_error_line(result: subprocess.CompletedProcess[str], command: str) -> str:
    """Exit code 2, stderr ending with exactly one `tradedesk: error:` line, no traceback; return that line."""
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output
    assert result.returncode == 2, f"exit code {result.returncode}; output:\n{output}"
    assert result.stdout == "", f"nothing belongs on stdout when the command fails:\n{result.stdout}"
    lines = result.stderr.rstrip("\n").splitlines()
    errors = [line for line in lines if line.startswith(ERROR_PREFIX)]
    assert len(errors) == 1, f"expected exactly one {ERROR_PREFIX!r} line:\n{result.stderr}"
    assert lines[-1] == errors[0], f"the error line must be the last line:\n{result.stderr}"
    if command in ("run", "web", "worker", "bot", "sync-commands"):
        # These log what they start (which local defaults are in use, migrations); nothing else may precede the error.
        noise = [line for line in lines[:-1] if not _RUN_INFO_LINE.match(line)]
        assert noise == [], f"unexpected lines before the error:\n{result.stderr}"
    else:
        assert lines == errors, f"stderr must be the one error line:\n{result.stderr}"
    line = errors[0]
    assert len(line) > len(ERROR_PREFIX) + 10, f"the error says too little: {line!r}"
    return line


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_leftovers(path)


def env_with(data_dir: Path, **extra: str) -> dict[str, str]:
    return clean_env(TRADEDESK_DATA_DIR=str(data_dir), TRADEDESK_WEB_PORT=str(free_port()), **extra)


# --- DATABASE_URL ------------------------------------------------------------------------------------------------

MALFORMED_URLS = [
    "not a url",
    "mysql://u@h/db",
    "postgresql://u@h:notaport/db",
    "postgresql://u@host/",
    "postgresql://u:secretpw@host:99999/db",
    "postgres://u:secretpw@/db",
]


@pytest.mark.parametrize("url", MALFORMED_URLS)
@pytest.mark.parametrize("command", ["migrate", "run", "web", "worker", "db-url"])
def test_malformed_database_url_is_one_line(command: str, url: str, data_dir: Path) -> None:
    result = run_cli(command, env=env_with(data_dir, DATABASE_URL=url))
    line = assert_one_error_line(result, command)
    assert "DATABASE_URL" in line
    assert "secretpw" not in result.stdout + result.stderr
    assert not data_dir.exists(), "with DATABASE_URL set nothing may be created under TRADEDESK_DATA_DIR"


@pytest.mark.parametrize("command", ["migrate", "run", "web", "worker", "db-url"])
def test_unreachable_database_is_one_line_without_the_password(command: str, data_dir: Path) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://u:secretpw@127.0.0.1:{port}/db"
    result = run_cli(command, env=env_with(data_dir, DATABASE_URL=url))
    line = assert_one_error_line(result, command)
    assert "can't reach the database" in line
    assert f"127.0.0.1:{port}" in line
    assert "secretpw" not in result.stdout + result.stderr
    assert not data_dir.exists()


# --- TRADEDESK_DATA_DIR ------------------------------------------------------------------------------------------

DATA_DIR_COMMANDS = ["migrate", "run", "db-url"]


@pytest.mark.parametrize("command", DATA_DIR_COMMANDS)
def test_data_dir_under_a_regular_file_is_one_line(command: str, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    data_dir = blocker / "sub" / "data"
    result = run_cli(command, env=env_with(data_dir))
    line = assert_one_error_line(result, command)
    assert "TRADEDESK_DATA_DIR" in line
    assert str(blocker) in line
    assert blocker.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"], "nothing may be created"


@pytest.mark.parametrize("command", DATA_DIR_COMMANDS)
def test_data_dir_without_write_permission_is_one_line(command: str, tmp_path: Path) -> None:
    # Root bypasses permission bits through CAP_DAC_OVERRIDE; drop it (and its read twin) so the bits count.
    prefix: list[str] = []
    if IS_ROOT:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux) to drop CAP_DAC_OVERRIDE")
        prefix = [setpriv, "--bounding-set", "-dac_override,-dac_read_search"]
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        data_dir = locked / "data"
        result = run_cli(command, env=env_with(data_dir), prefix=prefix)
        line = assert_one_error_line(result, command)
        assert "TRADEDESK_DATA_DIR" in line
        assert "not writable" in line
        assert list(locked.iterdir()) == [], "nothing may be created"
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize("command", DATA_DIR_COMMANDS)
def test_data_dir_inside_root_home_is_refused_as_root(command: str) -> None:
    if not IS_ROOT:
        pytest.skip("only root runs the embedded Postgres as another OS user, which would open up /root")
    top = Path("/root") / f"tradedesk-test-{uuid.uuid4().hex[:12]}"
    root_mode = Path("/root").stat().st_mode
    try:
        result = run_cli(command, env=env_with(top / "data"))
        line = assert_one_error_line(result, command)
        assert "TRADEDESK_DATA_DIR" in line
        assert "root's home" in line
        assert not top.exists(), "nothing may be created under /root"
        assert Path("/root").stat().st_mode == root_mode, "the mode of /root must not change"
    finally:
        kill_leftovers(top)


# --- other settings ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("port", ["abc", "70000", "-1"])
@pytest.mark.parametrize("command", ["run", "migrate"])
def test_invalid_web_port_is_a_configuration_error(command: str, port: str, data_dir: Path) -> None:
    env = env_with(data_dir)
    env["TRADEDESK_WEB_PORT"] = port
    result = run_cli(command, env=env)
    line = assert_one_error_line(result, command)
    assert line.startswith(f"{ERROR_PREFIX} configuration error")
    assert "TRADEDESK_WEB_PORT" in line
    assert not data_dir.exists()


# --- bootstrap-sql -----------------------------------------------------------------------------------------------


def test_bootstrap_sql_prints_roles_without_inheritance(data_dir: Path) -> None:
    result = run_cli("bootstrap-sql", "--database", "tradedesk_prod", env=env_with(data_dir))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    sql = result.stdout
    assert "CREATE ROLE tradedesk_user NOLOGIN" in sql
    assert "CREATE ROLE tradedesk_system NOLOGIN" in sql
    assert "GRANT tradedesk_user TO tradedesk WITH INHERIT FALSE" in sql
    assert "GRANT tradedesk_system TO tradedesk WITH INHERIT FALSE" in sql
    assert "NOSUPERUSER NOBYPASSRLS" in sql
    assert "GRANT CONNECT, CREATE ON DATABASE tradedesk_prod TO tradedesk" in sql
    assert not data_dir.exists(), "bootstrap-sql only prints"


@pytest.mark.parametrize(
    "args",
    [
        ["--login-role", "bad name"],
        ["--login-role", "x; DROP ROLE postgres"],
        ["--login-role", ""],
        ["--database", "prod db"],
    ],
    ids=["space", "injection", "empty", "bad-database"],
)
def test_bootstrap_sql_rejects_bad_identifiers(args: list[str], data_dir: Path) -> None:
    result = run_cli("bootstrap-sql", *args, env=env_with(data_dir))
    line = assert_one_error_line(result, "bootstrap-sql")
    assert repr(args[1]) in line


@pytest.mark.parametrize("command", ["run", "web"])
def test_web_port_in_use_is_one_line_and_stops_the_embedded_postgres(command: str, data_dir: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = env_with(data_dir)
        env["TRADEDESK_WEB_PORT"] = str(port)
        result = run_cli(command, env=env)
    line = assert_one_error_line(result, command)
    assert f"port {port} on 127.0.0.1 is in use" in line
    assert "TRADEDESK_WEB_PORT" in line
    assert leftovers(data_dir) == [], "the embedded Postgres started for this run must be stopped again"


def test_sync_commands_without_a_token_says_what_is_missing(data_dir: Path) -> None:
    result = run_cli("sync-commands", env=clean_env(TRADEDESK_DATA_DIR=str(data_dir)))
    line = assert_one_error_line(result, "sync-commands")
    assert "DISCORD_TOKEN is not set" in line
    assert not data_dir.exists(), "nothing is started or created without a token"


@pytest.mark.parametrize("command", ["sync-commands", "worker"])
def test_a_refused_discord_token_is_one_line_and_stops_the_embedded_postgres(command: str, data_dir: Path) -> None:
    # A port nothing listens on stands in for Discord: the login fails, and the message says what to check. A worker
    # logs in too (REST only): it DMs the notifications.
    env = clean_env(
        TRADEDESK_DATA_DIR=str(data_dir),
        DISCORD_TOKEN="not-a-token",
        TRADEDESK_DISCORD_API_URL=f"http://127.0.0.1:{free_port()}/api/v10",
    )
    result = run_cli(command, env=env)
    line = assert_one_error_line(result, command)
    assert "can't reach Discord" in line and "not-a-token" not in result.stderr
    assert leftovers(data_dir) == []
