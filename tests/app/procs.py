"""Helpers for tests that run the real `tradedesk` console script as a separate process.

Every helper here works on real processes: the installed console script, the embedded Postgres it starts (which runs
as another OS user, `pgserver`, when the tests run as root) and a real TCP port. Nothing of ours is mocked.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

TRADEDESK = Path(sys.executable).parent / "tradedesk"

# Real services a developer may have configured in their shell; the tests exercise the local defaults.
_SCRUBBED = ("DATABASE_URL", "DISCORD_TOKEN", "OPENAI_API_KEY", "STRIPE_SECRET_KEY")


def free_port() -> int:
    """A TCP port nothing listens on right now (bound to 0, read back, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**extra: str) -> dict[str, str]:
    """A copy of the environment without real-service credentials or TRADEDESK_* settings, plus `extra`.

    TRADEDESK_* are dropped too so that a developer's TRADEDESK_MARKET_PROVIDER or TRADEDESK_LOG_LEVEL can't change
    what the tests see."""
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("TRADEDESK_")}
    env.update(extra)
    return env


def run_cli(
    *args: str, env: dict[str, str], timeout: float = 90.0, prefix: Sequence[str] = ()
) -> subprocess.CompletedProcess[str]:
    """Run `tradedesk ARGS` to completion (after `prefix`, e.g. setpriv) and capture its output."""
    return subprocess.run(
        [*prefix, str(TRADEDESK), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


@dataclass
class Tradedesk:
    """A `tradedesk run` (or web, worker, bot) process in its own session, with stderr going to a file (a pipe
    could fill and block it)."""

    proc: subprocess.Popen[bytes]
    log_path: Path
    port: int

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float) -> int:
        return self.proc.wait(timeout)

    def kill_group(self) -> None:
        """SIGKILL the whole process group (cleanup path; postgres has its own session and is handled separately)."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)


def start_run(data_dir: Path, port: int, log_path: Path, command: str = "run", **extra_env: str) -> Tradedesk:
    """`tradedesk COMMAND` (run by default) on `data_dir`, serving the web app on `port` when it has one."""
    env = clean_env(TRADEDESK_DATA_DIR=str(data_dir), TRADEDESK_WEB_PORT=str(port), **extra_env)
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            [str(TRADEDESK), command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return Tradedesk(proc=proc, log_path=log_path, port=port)


class Runs:
    """The `tradedesk` processes a test started; all are killed (process group) when the test ends."""

    def __init__(self, data_dir: Path, tmp_path: Path) -> None:
        self.data_dir = data_dir
        self.tmp_path = tmp_path
        self.started: list[Tradedesk] = []

    def start(self, port: int, command: str = "run", **extra_env: str) -> Tradedesk:
        log_path = self.tmp_path / f"{command}-{len(self.started) + 1}.log"
        td = start_run(self.data_dir, port, log_path, command, **extra_env)
        self.started.append(td)
        return td

    def kill_all(self) -> None:
        for td in self.started:
            td.kill_group()


def get_json(url: str, timeout: float = 2.0) -> tuple[int, Any]:
    """GET `url`; return (status, parsed JSON body) for 2xx and HTTP errors alike."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        body = exc.read()
        try:
            return exc.code, json.loads(body)
        except ValueError:
            return exc.code, body.decode(errors="replace")


def wait_healthy(td: Tradedesk, timeout: float = 60.0) -> tuple[dict[str, Any], float]:
    """Poll GET /healthz until it answers 200; return (body, seconds it took). Fails early if the process exits."""
    url = f"http://127.0.0.1:{td.port}/healthz"
    started = time.monotonic()
    last: object = "no answer yet"
    while (elapsed := time.monotonic() - started) < timeout:
        if td.proc.poll() is not None:
            raise AssertionError(
                f"tradedesk exited with {td.proc.returncode} after {elapsed:.1f}s before /healthz answered; "
                f"log:\n{td.log}"
            )
        try:
            status, body = get_json(url)
        except (OSError, ValueError) as exc:
            last = exc
        else:
            if status == 200:
                return body, elapsed
            last = (status, body)
        time.sleep(0.2)
    raise AssertionError(f"/healthz did not answer 200 within {timeout:.0f}s (last: {last!r}); log:\n{td.log}")


def _cmdline(proc: psutil.Process) -> str:
    try:
        if proc.status() == psutil.STATUS_ZOMBIE:
            return ""
        return " ".join(proc.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return ""


def processes_for(data_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names `data_dir` (the postmaster: `postgres -D <data_dir>/pg ...`),
    with their children (postgres' backends and workers don't repeat the path)."""
    needle = str(data_dir)
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter():
        if proc.pid == os.getpid() or needle not in _cmdline(proc):
            continue
        found[proc.pid] = proc
        with contextlib.suppress(psutil.Error):
            for child in proc.children(recursive=True):
                found[child.pid] = child
    return [p for p in found.values() if _alive(p)]


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def leftovers(data_dir: Path, grace: float = 5.0) -> list[str]:
    """Descriptions of processes still using `data_dir` after up to `grace` seconds ([] when none)."""
    deadline = time.monotonic() + grace
    while True:
        procs = processes_for(data_dir)
        if not procs or time.monotonic() >= deadline:
            return [f"pid {p.pid} ({_owner(p)}): {_cmdline(p) or p.name()}" for p in procs if _alive(p)]
        time.sleep(0.2)


def _owner(proc: psutil.Process) -> str:
    try:
        return proc.username()
    except (psutil.Error, KeyError):
        return "?"


def kill_leftovers(data_dir: Path) -> None:
    """Cleanup: SIGKILL every process still using `data_dir` (postgres runs as another user; root may kill it)."""
    procs = processes_for(data_dir)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(procs, timeout=10)
