"""The `tradedesk` command."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.logs import setup_logging
from core.config import Settings
from core.errors import SetupError

log = logging.getLogger("tradedesk")


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']).upper() or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise SetupError(f"configuration error: {problems}") from None


def _cmd_run(args: argparse.Namespace) -> None:
    from app.run import run

    settings = _settings()
    setup_logging(settings.log_level)
    asyncio.run(run(settings))


def _serve(command: str) -> None:
    from app.run import BOT, WEB, WORKER, serve

    roles = {"web": WEB, "worker": WORKER, "bot": BOT}[command]
    settings = _settings()
    setup_logging(settings.log_level)
    asyncio.run(serve(settings, roles))


def _cmd_web(args: argparse.Namespace) -> None:
    _serve("web")


def _cmd_worker(args: argparse.Namespace) -> None:
    _serve("worker")


def _cmd_bot(args: argparse.Namespace) -> None:
    _serve("bot")


def _cmd_migrate(args: argparse.Namespace) -> None:
    from app.database import provide_database
    from core.db.migrate import migrate

    settings = _settings()
    setup_logging(settings.log_level)

    async def go() -> None:
        async with provide_database(settings) as url:
            report = await migrate(url)
        log.info("migrations: %d applied, %d already applied", len(report.applied), len(report.already))

    asyncio.run(go())


def _cmd_chat(args: argparse.Namespace) -> None:
    from app.chat import chat

    settings = _settings()
    # The console is for the conversation: only warnings and errors are logged (to stderr), unless asked for more.
    setup_logging("WARNING" if settings.log_level == "INFO" else settings.log_level)
    asyncio.run(chat(settings, args.user, trace=args.trace))


def _cmd_sync_commands(args: argparse.Namespace) -> None:
    from app.bot_role import BotRole
    from app.database import provide_database
    from core.db.database import Database
    from core.db.migrate import migrate

    settings = _settings()
    setup_logging(settings.log_level)
    if settings.discord_token is None:
        raise SetupError("DISCORD_TOKEN is not set: there is no bot whose commands could be registered")

    async def go() -> None:
        async with provide_database(settings) as url:
            await migrate(url)
            database = Database(url)
            role = BotRole(settings, database, sync_on_start=False)
            try:
                await role.login()
                await role.bot.sync_commands(force=True)
            finally:
                await role.stop()
                await database.dispose()

    asyncio.run(go())


def _cmd_bootstrap_sql(args: argparse.Namespace) -> None:
    from core.db.roles import bootstrap_sql

    try:
        sql = bootstrap_sql(args.login_role, args.database)
    except ValueError as exc:
        raise SetupError(str(exc)) from None
    print(sql, end="")
    print(
        f"-- Then give the login role a password (ALTER ROLE {args.login_role} PASSWORD '...';) and set\n"
        f"-- DATABASE_URL=postgresql://{args.login_role}:PASSWORD@HOST:5432/{args.database or 'DBNAME'}"
    )


def _cmd_db_url(args: argparse.Namespace) -> None:
    from app.database import provide_database

    settings = _settings()
    setup_logging("WARNING")

    was_running = settings.embedded_db and (settings.pg_data_dir / "postmaster.pid").exists()

    async def go() -> str:
        async with provide_database(settings, keep_running=True) as url:
            return url

    url = asyncio.run(go())
    print(url)
    if settings.embedded_db and not was_running:
        print("(started the embedded Postgres; it keeps running until `tradedesk db-stop`)", file=sys.stderr)


def _cmd_db_stop(args: argparse.Namespace) -> None:
    from core.db.embedded import EmbeddedPostgres

    settings = _settings()
    setup_logging("WARNING")
    if not settings.embedded_db:
        raise SetupError("DATABASE_URL is set: there is no embedded Postgres to stop")
    server = EmbeddedPostgres(settings.data_dir)
    if not (server.pgdata / "postmaster.pid").exists():
        print("embedded Postgres is not running")
        return
    server.start()
    server.stop()
    running = (server.pgdata / "postmaster.pid").exists()
    print("embedded Postgres is still in use by another tradedesk process" if running else "embedded Postgres stopped")


def _cmd_bench(args: argparse.Namespace) -> None:
    from bench import run_bench

    settings = _settings()
    setup_logging("WARNING")
    run_bench(settings, args.name, as_json=args.json, quick=args.quick)


_MIGRATIONS = (
    "Migrations: applied at start under an advisory lock, so processes starting together apply each one once "
    "(the others find it applied); or run `tradedesk migrate` before starting them."
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tradedesk", description="TradeDesk: a conversational trading assistant.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser(
        "run",
        help="start everything in one process: web app, worker, and the Discord bot when DISCORD_TOKEN is set",
        description="Start every role in one process: the web app, the worker (market feed, matching, alerts, "
        "notifications, scheduler) and the Discord bot when DISCORD_TOKEN is set. " + _MIGRATIONS,
    )
    sub.add_parser(
        "web",
        help="start the web app only: Stripe webhook, billing pages, dashboard, /healthz",
        description="Serve the web app on TRADEDESK_WEB_HOST:TRADEDESK_WEB_PORT: GET /healthz, POST /stripe/webhook, "
        "the billing pages and the dashboard, whose live prices come from the workers (tradedesk_prices). Start as "
        "many as you like behind a load balancer. " + _MIGRATIONS,
    )
    sub.add_parser(
        "worker",
        help="start a worker: notifications, and (one at a time, with failover) the market feed and the scheduler",
        description="Start a worker, without a web server. Every worker delivers the notification outbox (DMs "
        "through Discord's REST API when DISCORD_TOKEN is set). The market feed with order matching and alerts, "
        "and the scheduler, each run in one worker per database at a time: the others stand by and take over "
        "within a few seconds when the leader stops or dies. " + _MIGRATIONS,
    )
    sub.add_parser(
        "bot",
        help="start the Discord bot only (needs DISCORD_TOKEN); workers send its DMs",
        description="Connect the Discord bot and answer slash commands, messages and buttons. It sends no "
        "notifications itself: workers do. Needs DISCORD_TOKEN. " + _MIGRATIONS,
    )
    sub.add_parser("migrate", help="apply database migrations")
    p = sub.add_parser("chat", help="talk to the assistant on the console as a user (one message per line)")
    p.add_argument("--user", required=True, help="console handle; the user is created on first use")
    p.add_argument("--trace", action="store_true", help='write each tool call to stderr as {"tool": ..., "args": ...}')
    sub.add_parser("sync-commands", help="register the bot's slash commands with Discord now (needs DISCORD_TOKEN)")
    p = sub.add_parser("bootstrap-sql", help="print the one-time SQL that prepares an external Postgres")
    p.add_argument("--login-role", default="tradedesk", help="login role to create (default: tradedesk)")
    p.add_argument("--database", help="database to grant CONNECT and CREATE on")
    sub.add_parser("db-url", help="print a URL for the database that psql and asyncpg accept")
    sub.add_parser("db-stop", help="stop the embedded Postgres if no tradedesk process uses it")
    p = sub.add_parser("bench", help="run a benchmark (see bench/)")
    p.add_argument("name", nargs="?", help="benchmark name; omit to list them")
    p.add_argument("--json", action="store_true", help="print exactly one JSON object on stdout")
    p.add_argument("--quick", action="store_true", help="a smaller data set, for a smoke run")

    handlers = {
        "run": _cmd_run,
        "web": _cmd_web,
        "worker": _cmd_worker,
        "bot": _cmd_bot,
        "migrate": _cmd_migrate,
        "sync-commands": _cmd_sync_commands,
        "chat": _cmd_chat,
        "bootstrap-sql": _cmd_bootstrap_sql,
        "db-url": _cmd_db_url,
        "db-stop": _cmd_db_stop,
        "bench": _cmd_bench,
    }
    parser.set_defaults(_handlers=handlers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args._handlers[args.command](args)
    except SetupError as exc:
        print(f"tradedesk: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
