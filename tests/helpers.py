"""Small test utilities shared across packages: an injectable clock, and a change listener run for a test's life."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime, timedelta
from uuid import UUID

from app.stripe_gateway import StripeGateway
from bench.fake_stripe import FakeStripe
from core.db.database import Database, raw_connection
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


async def make_pro(db: Database, user: UUID, until: datetime) -> None:
    """Give `user` an active Pro subscription, as the Stripe webhook would write it."""
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
            until,
        )


def stripe_gateway(fake: FakeStripe, price_pro: str) -> StripeGateway:
    """The real Stripe gateway pointed at a local FakeStripe: Pro at `price_pro`, no metered usage, no retries."""
    return StripeGateway(
        fake.api_key,
        price_pro=price_pro,
        price_pro_metered=None,
        meter_event=None,
        api_base=fake.base_url,
        max_network_retries=0,
    )
