"""Fixtures for alert tests: the broker tests' instruments, prices and clock, users, an engine and its listener."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from core.alerts.engine import AlertEngine
from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.db.listen import ChangeListener
from tests.core.orders import conftest as _orders
from tests.core.orders.conftest import Clock
from tests.helpers import listening

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
    async with db.system_scope("test.make_pro") as s:
        conn = await raw_connection(s)
        customer = f"cus_{user.hex[:12]}"
        await conn.execute(
            "INSERT INTO billing_customers (user_id, stripe_customer_id) VALUES ($1, $2)", user, customer
        )
        await conn.execute(
            "INSERT INTO subscriptions (id, user_id, stripe_customer_id, plan, status, current_period_end) "
            "VALUES ($1, $2, $3, 'pro', 'active', $4)",
            f"sub_{user.hex[:12]}",
            user,
            customer,
            clock() + timedelta(days=30),
        )


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
