"""`tradedesk chat --user HANDLE`: the console front. One message per line from stdin (a TTY or a pipe), replies on
stdout, the user's notifications inline, and proposals confirmed with `confirm ID` (or dropped with `cancel ID`)
through the same checks as Discord's buttons. `/dashboard` prints a one-time sign-in link to the web dashboard (as
Discord's /dashboard replies privately), `/help` what the console understands.

The user is created on first use with a default paper portfolio. Prices, alerts and notifications need the worker
role: when no other TradeDesk process runs it for this database, the chat runs it in-process (and waits for the first
prices before reading). Either way a console user's notifications reach this session over the `tradedesk_console`
channel. `--trace` writes every tool call to stderr as one JSON line, so a conversation can be audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

from app.bot_role import RestNotifier
from app.database import check_database_settings, provide_database
from app.services import build_agent
from app.services import desk as build_desk
from app.worker import Worker, check_market_settings
from core.auth.service import LOGIN_TTL
from core.config import Settings
from core.db.database import Database
from core.db.identity import normalize_handle
from core.db.leader import MARKET_LOCK, is_held
from core.db.listen import ChangeListener
from core.db.migrate import migrate
from core.errors import DomainError, InvalidInput, SetupError
from core.notifications.notifier import CONSOLE_CHANNEL, ConsoleNotifier, Notifier, RoutingNotifier
from core.orders.models import OrderView
from core.orders.proposals import Confirmed, Proposal
from tools.agent import Agent
from tools.context import ToolContext
from tools.desk import Desk
from tools.planner import HELP

log = logging.getLogger("tradedesk.chat")

PRICES_WITHIN_S = 15.0
_QUIT = {"quit", "exit", "/quit", "/exit"}
CONSOLE_HELP = (
    "In this console: `confirm ID` places a proposal and `cancel ID` drops it; `/dashboard` prints a one-time "
    "sign-in link to your web dashboard; `quit` (or end of input) leaves."
)


def proposal_line(p: Proposal) -> str:
    short = p.id.hex[:8]
    if p.action == "cancel":
        what = f"cancel order {str(p.target_order_id)[:8]}"
    else:
        what = f"{(p.side or '').upper()} {_dec(p.qty)} {p.symbol} {(p.type or '').replace('_', '-')}"
        if p.stop_price is not None:
            what += f" stop {_dec(p.stop_price)}"
        if p.limit_price is not None:
            what += f" limit {_dec(p.limit_price)}"
        what += f" ({(p.tif or '').upper()}), priced at {_dec(p.quote_price)}"
        if p.simulated:
            what += " (simulated price)"
    return f"Proposal {short}: {what}. Type `confirm {short}` to place it or `cancel {short}` to drop it."


def order_line(o: OrderView) -> str:
    text = f"Order {str(o.id)[:8]} {o.side.upper()} {_dec(o.qty)} {o.symbol} {o.type.replace('_', '-')}: {o.status}"
    if o.filled_qty and o.avg_fill_price is not None:
        text += f" {_dec(o.filled_qty)} @ {_dec(o.avg_fill_price)}"
    return text + ". Paper trading: no real money moved."


def _dec(value: Any) -> str:
    if value is None:
        return "?"
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


class ConsoleSession:
    def __init__(self, desk: Desk, agent: Agent, user_id: UUID, handle: str, out: TextIO, charts_dir: Path) -> None:
        self.desk = desk
        self.agent = agent
        self.user_id = user_id
        self.handle = handle
        self.out = out
        self.charts_dir = charts_dir
        self.shown: dict[str, UUID] = {}  # short id -> proposal id, for `confirm ID`

    def say(self, text: str) -> None:
        print(text, file=self.out, flush=True)

    async def on_notification(self, payload: str) -> None:
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if data.get("handle") == self.handle:
            self.say(f"[notification] {data.get('title')}: {' | '.join(str(data.get('body', '')).splitlines())}")

    def _proposal_id(self, token: str) -> UUID:
        token = token.strip().lower()
        if token in self.shown:
            return self.shown[token]
        try:
            return UUID(token)
        except ValueError:
            raise InvalidInput(f"No proposal {token!r} in this session: use the id shown with it.") from None

    async def handle_line(self, line: str) -> None:
        words = line.strip().split()
        command = words[0].lower() if len(words) == 1 else None
        if command == "/help":
            self.say(HELP)
            self.say(CONSOLE_HELP)
            return
        try:
            if command == "/dashboard":
                url = await self.desk.dashboard_link(self.user_id)
                minutes = int(LOGIN_TTL.total_seconds() // 60)
                self.say(f"Your private sign-in link to the dashboard (works once, within {minutes} minutes): {url}")
                return
            if len(words) == 2 and words[0].lower() == "confirm":
                result = await self.desk.confirm(self.user_id, self._proposal_id(words[1]))
                if isinstance(result, Confirmed):
                    self.say(order_line(result.order))
                else:
                    self.say(f"The price moved {result.drift_bps / 100:.2f}% since the proposal; here it is again:")
                    self._show(result.new)
                return
            if len(words) == 2 and words[0].lower() == "cancel" and words[1].lower() in self.shown:
                await self.desk.cancel_proposal(self.user_id, self._proposal_id(words[1]))
                self.say("Canceled: nothing was placed.")
                return
        except DomainError as exc:
            self.say(exc.message)
            return
        reply = await self.agent.ask(ToolContext(self.user_id, self.desk), line)
        self.say(reply.text)
        for proposal in reply.proposals:
            if proposal.status == "pending":
                self._show(proposal)
        for name, data in reply.attachments:
            self.charts_dir.mkdir(parents=True, exist_ok=True)
            path = self.charts_dir / name
            path.write_bytes(data)
            self.say(f"Chart saved to {path}")

    def _show(self, proposal: Proposal) -> None:
        self.shown[proposal.id.hex[:8]] = proposal.id
        self.say(proposal_line(proposal))


async def _stdin_lines(stream: TextIO) -> Any:
    """Lines from stdin without blocking the event loop (a pipe or a TTY alike)."""
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), stream)
    try:
        while line := await reader.readline():
            yield line.decode(errors="replace")
    finally:
        transport.close()


async def _wait_for_prices(database: Database) -> None:
    async with asyncio.timeout(PRICES_WITHIN_S):
        while True:
            async with database.engine.connect() as conn:
                raw = await conn.get_raw_connection()
                if await raw.driver_connection.fetchval("SELECT count(*) FROM last_prices"):
                    return
            await asyncio.sleep(0.2)


async def chat(
    settings: Settings, handle: str, *, trace: bool, stdin: TextIO = sys.stdin, out: TextIO = sys.stdout
) -> None:
    try:
        handle = normalize_handle(handle)
    except InvalidInput as exc:
        raise SetupError(f"--user: {exc.message}") from None
    check_database_settings(settings)
    check_market_settings(settings)

    def trace_call(name: str, args: dict[str, Any]) -> None:
        print(json.dumps({"tool": name, "args": args}, ensure_ascii=False), file=sys.stderr, flush=True)

    async with provide_database(settings) as url:
        await migrate(url)
        database = Database(url)
        worker: Worker | None = None
        rest: RestNotifier | None = None
        listener_task: asyncio.Task[None] | None = None
        try:
            desk = build_desk(settings, database)
            who = await desk.identify_console(handle)
            await desk.portfolio(who.user_id)  # opens the default paper portfolio on first use
            agent = build_agent(settings, channel="console", trace=trace_call if trace else None)
            session = ConsoleSession(desk, agent, who.user_id, handle, out, settings.data_dir / "charts")
            listener = ChangeListener(
                database, name="console", channel=CONSOLE_CHANNEL, on_change=session.on_notification,
                on_connect=_nothing,
            )  # fmt: skip
            listener_task = asyncio.create_task(listener.run(), name="console.notifications")
            await asyncio.wait_for(listener.connected.wait(), 30)
            # No worker for this database yet: run one here (a `tradedesk worker` started later stands by).
            if not await is_held(database, MARKET_LOCK):
                discord_notifier: Notifier | None = None
                if settings.discord_token is not None:
                    rest = RestNotifier(settings)
                    discord_notifier = await rest.open()
                # The session's listener prints console notifications (they are also published); the worker doesn't.
                console = ConsoleNotifier(None, database)
                notifier = RoutingNotifier(console, discord_notifier, hold_discord=True)
                worker = Worker(settings, database, notifier)
                await worker.start()
                with contextlib.suppress(TimeoutError):
                    await _wait_for_prices(database)
            for missed in who.missed:
                session.say(f"[held back] {missed.title}")
            async for line in _stdin_lines(stdin):
                if line.strip().lower() in _QUIT:
                    break
                await session.handle_line(line)
        finally:
            if listener_task is not None:
                listener_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener_task
            if worker is not None:
                await worker.stop()
            if rest is not None:
                await rest.close()
            await database.dispose()


async def _nothing() -> None:
    return None
