"""`tradedesk run` with DISCORD_TOKEN: the bot role beside web and worker in one process, against the fake Discord.

The fake runs in the test; the process is pointed at it with TRADEDESK_DISCORD_API_URL and _GATEWAY_URL (the same
settings a REST proxy deployment uses). Proves the wiring end to end: the gateway session, command registration
kept across restarts by its hash, a slash command answered from the sim feed's prices, and an alert fired by a sim
tick delivered as a DM by the worker's dispatcher through the bot's HTTP client.
"""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from bench.fake_discord import FakeDiscord, option, subcommand
from tests.app.procs import TRADEDESK, Tradedesk, clean_env, free_port, get_json, kill_leftovers, start_run

pytestmark = pytest.mark.slow

HEALTHY_WITHIN_S = 90  # a cold start includes initdb of the embedded Postgres


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    yield path
    kill_leftovers(path)


async def healthy_with_bot(td: Tradedesk) -> dict[str, Any]:
    """Poll /healthz without blocking the loop the fake Discord runs on, until the bot reports ok."""
    last: object = None
    async with asyncio.timeout(HEALTHY_WITHIN_S):
        while True:
            assert td.proc.poll() is None, f"tradedesk run exited with {td.proc.returncode}; log:\n{td.log}"
            try:
                status, body = await asyncio.to_thread(get_json, f"http://127.0.0.1:{td.port}/healthz")
            except (OSError, ValueError) as exc:
                last = exc
            else:
                last = body
                if status == 200 and body.get("bot") == "ok":
                    return dict(body)
            await asyncio.sleep(0.2)
    raise AssertionError(f"no healthy bot (last {last!r}); log:\n{td.log}")


async def stop(td: Tradedesk) -> None:
    td.signal(signal.SIGTERM)
    code = await asyncio.to_thread(td.wait, 30)
    assert code == 0, td.log
    assert "Traceback" not in td.log, td.log


async def test_run_with_a_discord_token_serves_commands_and_dms_an_alert_fired_by_a_sim_tick(
    data_dir: Path, tmp_path: Path
) -> None:
    async with FakeDiscord() as fake:
        env = {
            "DISCORD_TOKEN": fake.token,
            "TRADEDESK_DISCORD_API_URL": fake.api_base,
            "TRADEDESK_DISCORD_GATEWAY_URL": str(fake.gateway_url),
            "TRADEDESK_SIM_TICKS_PER_S": "100",
        }
        port = free_port()
        td = start_run(data_dir, port, tmp_path / "run-1.log", **env)
        try:
            body = await healthy_with_bot(td)
            assert body["db"] == "ok" and body["bot"] == "ok"
            assert "discord: DISCORD_TOKEN set; the Discord bot runs in this process" in td.log
            assert fake.command_writes == 1
            assert "alert" in {c["name"] for c in fake.commands()}

            trader = fake.payloads.user("trader")
            await alert_just_above_the_sim(fake, trader)

            dm = await fake.wait_for_request(
                lambda r: r.method == "POST" and r.route == "POST /channels/{channel_id}/messages", timeout=60
            )
            assert dm.status == 200 and dm.json is not None
            assert dm.json["embeds"][0]["title"].startswith("AAPL above")
            assert dm.json["enforce_nonce"] is True and dm.json["nonce"].isdigit()
            assert fake.dm_channel_id(int(trader["id"])) is not None
            await stop(td)

            second = start_run(data_dir, port, tmp_path / "run-2.log", **env)
            try:
                await healthy_with_bot(second)
                assert fake.command_writes == 1, "a restart with the same commands must not register them again"
                assert "slash commands unchanged since the last registration" in second.log
                await stop(second)
            finally:
                second.kill_group()
            # `tradedesk sync-commands` registers them again on demand, unchanged or not.
            sync = await asyncio.create_subprocess_exec(
                str(TRADEDESK), "sync-commands", env=clean_env(TRADEDESK_DATA_DIR=str(data_dir), **env),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            _, err = await asyncio.wait_for(sync.communicate(), 90)
            assert sync.returncode == 0, err.decode()
            assert "registered 15 slash commands with Discord" in err.decode()
            assert fake.command_writes == 2
        finally:
            td.kill_group()


async def wait_in_log(td: Tradedesk, needle: str, within: float = HEALTHY_WITHIN_S) -> None:
    async with asyncio.timeout(within):
        while needle not in td.log:
            assert td.proc.poll() is None, f"exited with {td.proc.returncode}; log:\n{td.log}"
            await asyncio.sleep(0.1)


async def test_bot_and_worker_as_two_processes_the_worker_dms_over_rest(data_dir: Path, tmp_path: Path) -> None:
    """`tradedesk bot` answers the slash commands and sends no notifications; `tradedesk worker` fires the alert on a
    sim tick and DMs it itself, through discord.py's HTTP client logged in with the token (no gateway)."""
    async with FakeDiscord() as fake:
        env = {
            "DISCORD_TOKEN": fake.token,
            "TRADEDESK_DISCORD_API_URL": fake.api_base,
            "TRADEDESK_DISCORD_GATEWAY_URL": str(fake.gateway_url),
            "TRADEDESK_SIM_TICKS_PER_S": "100",
        }
        worker = start_run(data_dir, 0, tmp_path / "worker.log", "worker", **env)
        bot: Tradedesk | None = None
        try:
            await wait_in_log(worker, "ready (worker)")
            assert "discord: this process DMs notifications through Discord's REST API" in worker.log
            bot = start_run(data_dir, 0, tmp_path / "bot.log", "bot", **env)
            await wait_in_log(bot, "discord: connected as")
            assert "ready (bot)" in bot.log and "market feed" not in bot.log and "scheduler" not in bot.log

            trader = fake.payloads.user("trader")
            await alert_just_above_the_sim(fake, trader)

            dm = await fake.wait_for_request(
                lambda r: r.method == "POST" and r.route == "POST /channels/{channel_id}/messages", timeout=60
            )
            assert dm.status == 200 and dm.json is not None
            assert dm.json["embeds"][0]["title"].startswith("AAPL above") and dm.json["enforce_nonce"] is True
            assert re.search(r"alerts: fired AAPL above", worker.log), worker.log
            await stop(bot)
            await stop(worker)
        finally:
            if bot is not None:
                bot.kill_group()
            worker.kill_group()


async def alert_just_above_the_sim(fake: FakeDiscord, trader: dict[str, Any]) -> Decimal:
    """/quote AAPL, then /alert add AAPL above a cent over it, as `trader`; the level that was accepted."""
    for _ in range(20):  # the sim walks: if it rises past the level between quote and add, try again
        payload = fake.payloads.slash_command("quote", option("symbol", "AAPL"), who=trader)
        await fake.dispatch("INTERACTION_CREATE", payload)
        quote = (await fake.wait_for_callback(int(payload["id"]), timeout=10)).callback_data
        match = re.search(r"\*\*([0-9,]+\.[0-9]+) USD\*\*", quote["embeds"][0]["description"])
        assert match and "simulated" in quote["embeds"][0]["footer"]["text"], quote
        level = Decimal(match[1].replace(",", "")) + Decimal("0.01")
        payload = fake.payloads.slash_command(
            "alert",
            subcommand("add", option("symbol", "AAPL"), option("when", "above"), option("value", str(level))),
            who=trader,
        )
        await fake.dispatch("INTERACTION_CREATE", payload)
        reply = (await fake.wait_for_callback(int(payload["id"]), timeout=10)).callback_data
        if reply.get("content", "").startswith("Alert set"):
            return level
    raise AssertionError("could not set an alert just above the sim price")
