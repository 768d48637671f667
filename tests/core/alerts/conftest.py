"""Fixtures for alert tests: the broker tests' instruments, prices and clock, users, an engine and its listener."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from core.alerts.engine import AlertEngine
from core.db.database import Database
from core.db.identity import resolve_identity
from core.db.listen import ChangeListener
from tests.core.orders import conftest as _orders
from tests.core.orders.conftest import Clock
from tests.helpers import listening
from tests.helpers import make_pro as give_pro

# The broker tests' fixtures, shared: the clock, and the instruments with their last prices.
clock = _orders.clock
market = _orders.market


@pytest.fixture
async def alice(db: Database, market: Any) -> UUID:
    return await resolve_identity(db, console_handle="alice")


@pytest.fixture
async def bob(db: Database, market: Any) -> UUID:
    return await resolve_identity(db, console_handle="bob")


async def make_pro(db: Database, user: UUID, clock: Clock) -> None:
    """Give `user` an active pro subscription, as the Stripe webhook would write it."""
    await give_pro(db, user, clock() + timedelta(days=30))


@pytest.fixture
async def engine(db: Database, market: Any, clock: Clock) -> AlertEngine:
    e = AlertEngine(db, clock=clock, retry_after_s=0, autostart=False)  # the tests commit with flush()
    await e.reload(clock())
    return e


@pytest.fixture
async def following(engine: AlertEngine, db: Database, clock: Clock) -> AsyncIterator[ChangeListener]:
    async def reload() -> None:
        await engine.reload(clock())

    async with listening(db, "test-alerts", engine.on_change, reload) as listener:
        yield listener
