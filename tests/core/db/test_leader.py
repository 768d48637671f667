"""Single owners per database: the one-shot session lock, and `Leadership` with failover, on the real database."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from datetime import UTC

import pytest
from apscheduler.schedulers.asyncio import AsyncIOScheduler  # type: ignore[import-untyped]

from core.db.database import Database
from core.db.leader import SCHEDULER_LOCK, WORKER_LOCK, Leadership, is_held, try_lock
from core.errors import SetupError
from tests.conftest import PgCluster

RETRY_S = 0.2  # contenders retry every 0.14-0.26 s here (5 s in the app)


async def test_only_one_session_holds_the_worker_lock_until_it_lets_go(db: Database) -> None:
    first = await try_lock(db, WORKER_LOCK)
    assert first is not None
    assert await try_lock(db, WORKER_LOCK) is None  # a second process relies on the first one's worker
    assert await try_lock(db, "tradedesk.other") is not None  # locks are by name
    assert await is_held(db, WORKER_LOCK)
    await first.release()
    assert not await is_held(db, WORKER_LOCK)
    again = await try_lock(db, WORKER_LOCK)
    assert again is not None
    await again.release()


async def test_a_worker_that_dies_releases_the_lock(db: Database) -> None:
    held = await try_lock(db, WORKER_LOCK)
    assert held is not None
    held._conn.terminate()  # the socket closes as when the worker's process is killed; Postgres ends the session
    for _ in range(50):
        successor = await try_lock(db, WORKER_LOCK)
        if successor is not None:
            await successor.release()
            return
    raise AssertionError("the lock of a dead session was never released")


async def until(condition: Callable[[], bool], within: float, what: str) -> float:
    """Wait for `condition`; return how long it took (fails after `within` seconds)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while not condition():
        if loop.time() - started > within:
            raise AssertionError(f"timed out after {within:g} s waiting for {what}")
        await asyncio.sleep(0.01)
    return loop.time() - started


class Contender:
    """A Leadership whose terms are recorded: ("acquire"|"lose", name) in one shared log."""

    def __init__(self, db: Database, name: str, events: list[tuple[str, str]], lock: str = SCHEDULER_LOCK) -> None:
        self.name = name
        self.events = events

        async def acquire() -> None:
            events.append(("acquire", name))

        async def lose() -> None:
            events.append(("lose", name))

        self.leadership = Leadership(db, lock, on_acquire=acquire, on_lose=lose, retry_s=RETRY_S)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self.leadership.run())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None


@pytest.fixture
async def pair(db: Database) -> AsyncIterator[tuple[Contender, Contender, list[tuple[str, str]]]]:
    events: list[tuple[str, str]] = []
    a, b = Contender(db, "a", events), Contender(db, "b", events)
    a.start()
    b.start()
    try:
        yield a, b, events
    finally:
        await a.stop()
        await b.stop()


def leaders(*contenders: Contender) -> list[str]:
    return [c.name for c in contenders if c.leadership.is_leader]


def assert_alternating(events: list[tuple[str, str]]) -> None:
    """Terms never overlap: every acquire comes after the previous holder's lose."""
    holder: str | None = None
    for kind, name in events:
        if kind == "acquire":
            assert holder is None, f"{name} acquired while {holder} led: {events}"
            holder = name
        else:
            assert holder == name, f"{name} lost a leadership it didn't hold: {events}"
            holder = None


async def test_of_two_contenders_exactly_one_leads(pair: tuple[Contender, Contender, list[tuple[str, str]]]) -> None:
    a, b, events = pair
    await a.leadership.first_attempt.wait()
    await b.leadership.first_attempt.wait()
    assert len(leaders(a, b)) == 1
    for _ in range(10):  # several retry periods of the standby: still one leader, the same one
        await asyncio.sleep(RETRY_S / 2)
        assert len(leaders(a, b)) == 1
    assert [kind for kind, _ in events] == ["acquire"]


async def test_killing_the_leaders_session_hands_leadership_over(
    pair: tuple[Contender, Contender, list[tuple[str, str]]], pg: PgCluster
) -> None:
    a, b, events = pair
    await until(lambda: len(leaders(a, b)) == 1, 5, "a leader")
    leader, standby = (a, b) if a.leadership.is_leader else (b, a)
    pid = leader.leadership.backend_pid
    assert pid is not None
    admin = await pg.admin()
    try:  # as when the leader's host dies: the server ends the session, which releases the lock
        assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    took = await until(lambda: standby.leadership.is_leader, 5, "the standby to take over")
    assert took < 5 * RETRY_S, took  # within about one retry period (generous for a loaded machine)
    await until(lambda: ("lose", leader.name) in events, 5, "the old leader to step down")
    assert leaders(a, b) == [standby.name]
    assert leader.leadership.terms == 1 and standby.leadership.terms == 1
    assert_alternating(events)
    # The old leader is a contender again: when the new one goes away, it leads again.
    await standby.stop()
    await until(lambda: leader.leadership.is_leader, 5, "the first leader to lead again")
    assert_alternating(events)


async def test_a_leader_that_stops_steps_down_before_releasing(
    pair: tuple[Contender, Contender, list[tuple[str, str]]],
) -> None:
    a, b, events = pair
    await until(lambda: len(leaders(a, b)) == 1, 5, "a leader")
    leader, standby = (a, b) if a.leadership.is_leader else (b, a)
    await leader.stop()
    assert events == [("acquire", leader.name), ("lose", leader.name)]
    await until(lambda: standby.leadership.is_leader, 5, "the standby to take over")
    assert events[-1] == ("acquire", standby.name)


async def test_a_leader_that_fails_to_start_releases_the_lock_and_tries_again(db: Database) -> None:
    attempts = 0
    lost = 0

    async def acquire() -> None:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise SetupError("the sim exchange can't listen")

    async def lose() -> None:
        nonlocal lost
        lost += 1

    leadership = Leadership(db, SCHEDULER_LOCK, on_acquire=acquire, on_lose=lose, retry_s=RETRY_S)
    task = asyncio.create_task(leadership.run())
    try:
        await leadership.first_attempt.wait()
        assert isinstance(leadership.error, SetupError) and not leadership.is_leader and lost == 1
        assert not await is_held(db, SCHEDULER_LOCK)  # released while it waits to try again
        await until(lambda: leadership.is_leader, 5, "the second attempt")
        assert attempts == 2 and leadership.error is None
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert lost == 2 and not leadership.is_leader


async def test_the_scheduler_runs_its_jobs_in_the_leader_only(db: Database, pg: PgCluster) -> None:
    """The worker's pattern: the leader runs an apscheduler with the jobs; the standby runs none until it leads."""
    runs: list[str] = []
    schedulers: dict[str, AsyncIOScheduler] = {}

    def contender(name: str) -> Leadership:
        async def job() -> None:
            runs.append(name)

        async def acquire() -> None:
            scheduler = AsyncIOScheduler(timezone=UTC)
            scheduler.add_job(job, "interval", seconds=0.05, id="test.job")
            scheduler.start()
            schedulers[name] = scheduler

        async def lose() -> None:
            schedulers.pop(name).shutdown(wait=False)

        return Leadership(db, SCHEDULER_LOCK, on_acquire=acquire, on_lose=lose, retry_s=RETRY_S)

    a, b = contender("a"), contender("b")
    tasks = [asyncio.create_task(a.run()), asyncio.create_task(b.run())]
    try:
        await until(lambda: len(runs) >= 5, 10, "the leader's job to run")
        first = "a" if a.is_leader else "b"
        assert set(runs) == {first}, runs
        old, new = (a, b) if first == "a" else (b, a)
        admin = await pg.admin()
        try:
            await admin.fetchval("SELECT pg_terminate_backend($1)", old.backend_pid)
        finally:
            await admin.close()
        await until(lambda: new.is_leader and not old.is_leader, 5, "failover")
        runs.clear()
        await until(lambda: len(runs) >= 5, 10, "the new leader's job to run")
        assert set(runs) == {"b" if first == "a" else "a"}, runs
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
    assert schedulers == {}


async def test_a_configuration_error_on_the_first_attempt_ends_the_contention(db: Database) -> None:
    """`fail_fast`: a worker that can never start the work says so at start instead of retrying forever."""

    async def acquire() -> None:
        raise SetupError("no active instrument has a sim symbol")

    leadership = Leadership(db, SCHEDULER_LOCK, on_acquire=acquire, retry_s=RETRY_S, fail_fast=(SetupError,))
    await asyncio.wait_for(leadership.run(), 10)  # returns: no retry
    assert isinstance(leadership.error, SetupError) and not leadership.is_leader
    assert leadership.first_attempt.is_set() and not await is_held(db, SCHEDULER_LOCK)
