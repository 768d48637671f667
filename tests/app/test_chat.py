"""`tradedesk chat --user HANDLE` as a real process on a fresh data dir: piped and interactive, grounded replies,
proposals confirmed by `confirm ID`, --trace, and bad input."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.db.database import Database
from core.db.identity import resolve_identity
from core.notifications.outbox import enqueue
from tests.app.procs import TRADEDESK, clean_env, kill_leftovers, leftovers

pytestmark = pytest.mark.slow

ANSWER_WITHIN_S = 60  # the first answer waits for a cold start: initdb, migrations and the first sim prices


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_leftovers(path)


def chat_env(data_dir: Path) -> dict[str, str]:
    return clean_env(TRADEDESK_DATA_DIR=str(data_dir))


def test_a_piped_question_on_a_fresh_database_gets_a_grounded_reply(data_dir: Path) -> None:
    result = subprocess.run(
        [str(TRADEDESK), "chat", "--user", "alice", "--trace"],
        input="how is my AAPL position\n\n🚀🚀\n",
        env=chat_env(data_dir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    out = result.stdout.splitlines()
    assert re.match(
        r"You have no AAPL position\. AAPL last traded at \$[\d,]+(\.\d+)? as of .* UTC \(simulated", out[0]
    )
    assert out[1].startswith("Ask me about your paper portfolio")  # the empty line: no model, no tools
    assert len(out) == 3 and len(out[2]) < 600  # emoji only: a short help reply
    traced = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert traced == [{"tool": "get_position", "args": {"symbol": "AAPL"}}]
    assert leftovers(data_dir) == []


def test_dashboard_prints_a_one_time_sign_in_link_under_the_public_url(data_dir: Path) -> None:
    result = subprocess.run(
        [str(TRADEDESK), "chat", "--user", "carol"],
        input="/dashboard\n/DASHBOARD\n/help\n",
        env=clean_env(TRADEDESK_DATA_DIR=str(data_dir), TRADEDESK_PUBLIC_URL="https://desk.example/"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    links = re.findall(r"within 10 minutes\): https://desk\.example/login/(\S+)$", result.stdout, re.MULTILINE)
    assert len(links) == 2 and links[0] != links[1], result.stdout  # a fresh link each time
    assert "/dashboard" in result.stdout.splitlines()[-1]  # /help names it among the console's commands
    assert leftovers(data_dir) == []


async def _notify(data_dir: Path, handle: str, title: str, body: str) -> None:
    db_url = await asyncio.create_subprocess_exec(
        str(TRADEDESK), "db-url", env=chat_env(data_dir), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    out, _ = await db_url.communicate()
    database = Database(out.decode().strip())
    try:
        user = await resolve_identity(database, console_handle=handle)
        async with database.system_scope("test.notify") as s:
            await enqueue(s, user, "alert", f"test:{title}", title, body)
    finally:
        await database.dispose()


async def _read_until(stream: asyncio.StreamReader, pattern: str) -> str:
    seen = ""
    async with asyncio.timeout(ANSWER_WITHIN_S):
        while not re.search(pattern, seen):
            line = await stream.readline()
            if not line:
                raise AssertionError(f"chat ended before {pattern!r}; output:\n{seen}")
            seen += line.decode()
    return seen


async def test_buy_confirm_and_the_position_with_real_numbers(data_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        str(TRADEDESK), "chat", "--user", "bob",
        env=chat_env(data_dir), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin and proc.stdout
    try:
        proc.stdin.write(b"buy 2 aapl\n")
        out = await _read_until(proc.stdout, r"confirm ([0-9a-f]{8})")
        proposal = re.search(r"confirm ([0-9a-f]{8})", out)
        assert proposal
        proc.stdin.write(f"confirm {proposal[1]}\n".encode())
        out = await _read_until(proc.stdout, r"filled")
        assert "BUY 2 AAPL" in out and "Paper trading" in out
        proc.stdin.write(f"confirm {proposal[1]}\n".encode())  # again: the same order, not a second one
        out = await _read_until(proc.stdout, r"filled")
        proc.stdin.write(b"how is my aapl position\n")
        out = await _read_until(proc.stdout, r"You hold")
        assert re.search(r"You hold 2 AAPL at an average cost of \$[\d,.]+", out), out
        # A notification for bob, enqueued as the alert engine would: his chat prints it inline.
        await _notify(data_dir, "bob", "AAPL above 1.00", "AAPL traded at 2.00.")
        out = await _read_until(proc.stdout, r"\[notification\]")
        assert "[notification] AAPL above 1.00: AAPL traded at 2.00." in out
        proc.stdin.close()
        assert await asyncio.wait_for(proc.wait(), 60) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
