"""Small test utilities shared across packages: an injectable clock, and a change listener run for a test's life."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta

from core.db.database import Database
from core.db.listen import ChangeListener


class Clock:
    """A clock that moves only when told."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **kwargs: float) -> None:
        self.at += timedelta(**kwargs)


@contextlib.asynccontextmanager
async def listening(
    db: Database, name: str, on_change: Callable[[str], Awaitable[None]], on_connect: Callable[[], Awaitable[None]]
) -> AsyncIterator[ChangeListener]:
    """A ChangeListener running (connected, state loaded) until the block ends."""
    listener = ChangeListener(db, name=name, on_change=on_change, on_connect=on_connect)
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.connected.wait(), 10)
    try:
        yield listener
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
