"""One worker per database: the session advisory lock the worker role holds."""

from __future__ import annotations

from core.db.database import Database
from core.db.leader import WORKER_LOCK, try_lock


async def test_only_one_session_holds_the_worker_lock_until_it_lets_go(db: Database) -> None:
    first = await try_lock(db, WORKER_LOCK)
    assert first is not None
    assert await try_lock(db, WORKER_LOCK) is None  # a second process relies on the first one's worker
    assert await try_lock(db, "tradedesk.other") is not None  # locks are by name
    await first.release()
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
