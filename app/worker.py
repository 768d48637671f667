"""The worker role: the market feed (with the local sim exchange when that is the provider), the tick bus, price
persistence, the paper broker's matcher, the alert engine, the notification outbox's dispatcher and the scheduler.
Bot and web never touch any of this: they read prices from last_prices.

Several workers may run against one database (`tradedesk worker` more than once, or beside `tradedesk run`): all of
them dispatch the outbox; the scheduler and the market half run in one of them at a time, with failover (see
`Worker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Awaitable, Callable

from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from app.scheduler import WorkerJobs, start_scheduler
from app.services import broker_costs, market_hours
from core.alerts.engine import AlertEngine
from core.billing.gateway import BillingGateway
from core.config import Settings
from core.db.database import Database
from core.db.leader import MARKET_LOCK, SCHEDULER_LOCK, Leadership
from core.db.listen import ChangeListener
from core.errors import SetupError
from core.market.bus import Subscription, TickBus
from core.market.feed import MarketFeed, check_url, redact_url
from core.market.instruments import SymbolMap, load_instruments
from core.market.persist import PricePersister
from core.market.providers import ADAPTERS, make_adapter
from core.market.sim import SimServer
from core.market.ticks import Tick
from core.notifications.dispatcher import Dispatcher
from core.notifications.limiter import TokenBucket
from core.notifications.notifier import ConsoleNotifier, Notifier
from core.orders.matching import Matcher

log = logging.getLogger("tradedesk.worker")

LEADERSHIP_RETRY_S = 5.0  # a standby worker takes over within about this long after the leader's session ends


def check_market_settings(settings: Settings) -> None:
    """Fail fast, before anything starts, on a provider this build can't stream."""
    if settings.market_provider not in ADAPTERS:
        raise SetupError(
            f"TRADEDESK_MARKET_PROVIDER={settings.market_provider} is not supported in this build yet; use one of: "
            + ", ".join(sorted(ADAPTERS))
        )
    if settings.market_url is not None:
        try:
            check_url(settings.market_url)
        except ValueError:
            raise SetupError(
                f"TRADEDESK_MARKET_URL {redact_url(settings.market_url)!r} is not a websocket URL (ws://... or wss://...)"
            ) from None


class Worker:
    """Start with `await worker.start()`, stop with `await worker.stop()` (safe after a failed or partial start).

    Every worker delivers the outbox (dispatchers share it through SKIP LOCKED). The scheduler and the market half
    (feed, tick bus, price persistence, matcher, alert engine, and the sim exchange when that is the provider) run
    in one worker per database at a time: each has its own `Leadership` (core/db/leader.py), so a standby worker
    takes over within a few seconds when the leader's process dies. `start()` returns after the first attempt at
    each, so a lone worker is already streaming when it returns.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        notifier: Notifier | None = None,
        billing: BillingGateway | None = None,
        *,
        retry_s: float = LEADERSHIP_RETRY_S,
    ) -> None:
        self.billing = billing
        self.settings = settings
        self.database = database
        self.bus = TickBus()  # one for the process's life: each market term publishes into it
        self.persister: PricePersister | None = None
        self.sim: SimServer | None = None
        self.feed: MarketFeed | None = None
        self.hours = market_hours(settings)
        self.matcher: Matcher | None = None
        # DMs through Discord when this process can (the bot's HTTP client, or a REST-only one), else printed.
        self.limiter = TokenBucket()
        self.dispatcher = Dispatcher(database, notifier or ConsoleNotifier(sys.stdout), self.limiter)
        self.alerts: AlertEngine | None = None
        self.jobs = WorkerJobs(database, self.hours, None, billing)
        self.market = Leadership(
            database, MARKET_LOCK, on_acquire=self._start_market, on_lose=self._stop_market, retry_s=retry_s,
            fail_fast=(SetupError,),
        )  # fmt: skip
        self.scheduling = Leadership(
            database, SCHEDULER_LOCK, on_acquire=self._start_scheduler, on_lose=self._stop_scheduler, retry_s=retry_s
        )
        self._alert_ticks: tuple[Subscription, asyncio.Task[None]] | None = None
        self._dispatch_stop = asyncio.Event()
        self.scheduler: AsyncIOScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []  # the market term's
        self._roles: list[asyncio.Task[None]] = []  # the dispatcher and the leaderships: the process's

    def feed_status(self) -> str:
        """ok, stale or down, or standby while another worker runs the feed: for /healthz."""
        if self.feed is not None:
            return self.feed.status()
        return "standby" if self._roles and not self.market.is_leader else "down"

    async def start(self) -> None:
        self._dispatch_stop.clear()
        self._roles.append(asyncio.create_task(self.dispatcher.run(self._dispatch_stop), name="notifications.dispatch"))
        self._roles.append(asyncio.create_task(self.market.run(), name="leader.market"))
        self._roles.append(asyncio.create_task(self.scheduling.run(), name="leader.scheduler"))
        await self.market.first_attempt.wait()
        await self.scheduling.first_attempt.wait()
        if isinstance(self.market.error, SetupError):
            raise self.market.error  # a lone worker that can't stream at all: say so at start, not in a loop
        if not self.market.is_leader:
            log.info("market feed: another worker runs it for this database; this one stands by to take over")
        if not self.scheduling.is_leader:
            log.info("scheduler: another worker runs the jobs for this database; this one stands by to take over")

    async def _start_scheduler(self) -> None:
        self.scheduler = start_scheduler(self.jobs)

    async def _stop_scheduler(self) -> None:
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
            self.scheduler = None
            log.info("scheduler: stopped")

    async def _start_market(self) -> None:
        settings = self.settings
        provider = settings.market_provider
        symbols = SymbolMap.for_provider(provider, (await load_instruments(self.database)).values())
        adapter = make_adapter(provider, symbols)
        if not symbols:
            raise SetupError(f"no active instrument has a {provider} symbol (instruments.provider_symbols)")
        url = adapter.url(settings)
        if provider == "sim" and settings.market_url is None:
            self.sim = SimServer.from_settings(settings)
            try:
                url = await self.sim.start()
            except OSError as exc:
                self.sim = None
                raise SetupError(
                    f"the sim exchange can't listen on 127.0.0.1:{settings.sim_port} ({exc.strerror}); "
                    f"set TRADEDESK_SIM_PORT to a free port, or 0 for any"
                ) from None
            log.info(
                "market feed: SIMULATED prices from the local sim exchange at %s (seed %d, %g trades/s)",
                url,
                settings.sim_seed,
                settings.sim_ticks_per_s,
            )
        else:
            log.info("market feed: %s at %s", provider, redact_url(url))
        self.persister = PricePersister(self.database, self.bus)
        self.persister.start()
        self.matcher = matcher = Matcher(self.database, self.hours, broker_costs(settings))
        # DAY-order expiry drops expired orders from this index when the scheduler runs here too; when it runs in
        # another worker, an expired order stays indexed until a tick reaches it and apply_fill refuses it.
        self.jobs.matcher = matcher
        await self._follow("matching", matcher.on_change, matcher.reload, matcher.on_tick)
        # Alerts see every price path (no conflation): their per-tick work is in memory, commits run beside it.
        self.alerts = alerts = AlertEngine(self.database, on_fired=self.dispatcher.wake, autostart=False)
        self._alert_ticks = await self._follow(
            "alerts", alerts.on_change, alerts.reload, alerts.on_tick, conflate=False
        )
        self._tasks.append(asyncio.create_task(alerts.run_fires(), name="alerts.fires"))
        self.feed = MarketFeed(
            adapter, url, symbols.canonical_symbols, self.bus.publish, stale_after_s=settings.market_stale_after_s
        )
        self.feed.start()
        log.info("market feed: streaming %d instrument(s): %s", len(symbols), ", ".join(symbols.canonical_symbols))

    async def _follow(
        self,
        name: str,
        on_change: Callable[[str], Awaitable[None]],
        reload: Callable[[], Awaitable[None]],
        on_tick: Callable[[Tick], Awaitable[None]],
        *,
        conflate: bool = True,
    ) -> tuple[Subscription, asyncio.Task[None]]:
        """Keep an in-memory index in step: LISTEN and load first, then consume ticks from the bus."""
        listener = ChangeListener(self.database, name=name, on_change=on_change, on_connect=reload)
        self._tasks.append(asyncio.create_task(listener.run(), name=f"{name}.listener"))
        await asyncio.wait_for(listener.connected.wait(), timeout=30)
        ticks = self.bus.subscribe(name, maxsize=100_000 if not conflate else 10_000, conflate=conflate)
        consumer = asyncio.create_task(self._consume(ticks, on_tick), name=f"{name}.ticks")
        self._tasks.append(consumer)
        return ticks, consumer

    @staticmethod
    async def _consume(ticks: Subscription, on_tick: Callable[[Tick], Awaitable[None]]) -> None:
        # A consumer that died would silently stop matching or alerting for everyone: log and go on instead.
        async for tick in ticks:
            try:
                await on_tick(tick)
            except Exception:
                log.exception("%s: failed on a %s tick; continuing with the next", ticks.name, tick.symbol)

    async def _stop_market(self) -> None:
        # The feed first (no new ticks), so that prices are never persisted past what the matcher and the alert
        # engine have evaluated; then the consumers; then the last write of prices; then the sim exchange.
        if self.feed is not None:
            await self.feed.stop()
            self.feed = None
        if self._alert_ticks is not None and self.alerts is not None:
            # Every tick already received is evaluated and its fires committed before prices are written a last time.
            ticks, consumer = self._alert_ticks
            ticks.close()
            with contextlib.suppress(asyncio.CancelledError):
                await consumer
            left = await self.alerts.drain()
            if left:
                log.error("alerts: %d fire(s) could not be committed before stopping", left)
        self._alert_ticks = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks.clear()
        for sub in self.bus.subscribers:
            if sub.name in ("matching", "alerts"):
                sub.close()
        if self.persister is not None:
            await self.persister.stop()
            self.persister = None
        if self.sim is not None:
            await self.sim.stop()
            self.sim = None
        self.jobs.matcher = None
        self.matcher = None
        self.alerts = None

    async def stop(self) -> None:
        # The leaderships first: each steps down (scheduler shut down; the market half stopped in order) and then
        # releases its lock; the dispatcher last (a delivery cut short is safe: its lease expires, the nonce dedupes).
        self._dispatch_stop.set()
        roles, self._roles = self._roles, []
        for task in roles:
            task.cancel()
        for task in roles:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # A worker stopped before its leaderships ran (or after they failed) may still hold a partial market half.
        await self._stop_scheduler()
        await self._stop_market()
