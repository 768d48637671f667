"""core/live.py: the live channels' payloads, and NOTIFY delivered exactly when the writing transaction commits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from core.db.database import Database
from core.db.listen import ChangeListener
from core.live import (
    LIVE,
    NOTIFY_LIMIT,
    PRICES,
    live_payloads,
    notify_live,
    notify_prices,
    parse_live,
    parse_prices,
    price_payloads,
)
from core.market.ticks import Tick


@contextlib.asynccontextmanager
async def heard(db: Database, channel: str) -> AsyncIterator[asyncio.Queue[str]]:
    """Payloads on `channel`, from a real ChangeListener, for the block's life."""
    queue: asyncio.Queue[str] = asyncio.Queue()

    async def on_change(payload: str) -> None:
        queue.put_nowait(payload)

    async def on_connect() -> None:
        return None

    listener = ChangeListener(db, name="test-live", channel=channel, on_change=on_change, on_connect=on_connect)
    task = asyncio.create_task(listener.run())
    await asyncio.wait_for(listener.connected.wait(), 10)
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def test_live_payloads_round_trip_and_stay_below_the_notify_limit() -> None:
    users = {uuid.uuid4(): ("orders", "portfolio") for _ in range(500)}
    payloads = live_payloads(users)
    assert len(payloads) > 1 and all(len(p.encode()) < NOTIFY_LIMIT for p in payloads)
    merged: dict[uuid.UUID, set[str]] = {}
    for payload in payloads:
        for user, topics in parse_live(payload).items():
            merged.setdefault(user, set()).update(topics)
    assert merged == {u: {"orders", "portfolio"} for u in users}
    with pytest.raises(ValueError, match="unknown live topic"):
        live_payloads({uuid.uuid4(): ("secrets",)})


def test_parse_live_skips_malformed_lines_and_unknown_topics() -> None:
    user = uuid.uuid4()
    assert parse_live(f"nonsense orders\n{user} orders bogus\n\n{user} inbox") == {user: {"orders", "inbox"}}


def test_price_payloads_are_json_below_the_limit_with_prices_as_strings() -> None:
    at = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    ticks = [Tick(f"SYM{i}", Decimal("190.1200"), Decimal(1), at, "sim") for i in range(400)]
    payloads = price_payloads(ticks)
    assert len(payloads) > 1 and all(len(p.encode()) < NOTIFY_LIMIT for p in payloads)
    merged: dict[str, dict[str, str]] = {}
    for payload in payloads:
        merged.update(parse_prices(payload))
    assert len(merged) == 400
    assert merged["SYM7"] == {"price": "190.12", "at": "2026-11-25T21:00:00+00:00"}
    assert parse_prices("not json") == {} and parse_prices(json.dumps({"X": {"price": 1}})) == {}


async def test_notify_live_is_heard_when_the_transaction_commits_and_never_when_it_rolls_back(db: Database) -> None:
    committed, rolled_back = uuid.uuid4(), uuid.uuid4()
    async with heard(db, LIVE) as queue:
        with contextlib.suppress(RuntimeError):
            async with db.system_scope("test.live") as s:
                await notify_live(s, {rolled_back: ("alerts",)})
                raise RuntimeError("roll back")
        async with db.system_scope("test.live") as s:
            await notify_live(s, {committed: ("alerts", "inbox")})
        payload = await asyncio.wait_for(queue.get(), 10)
    assert parse_live(payload) == {committed: {"alerts", "inbox"}}
    assert queue.empty()


async def test_prices_channel_is_separate(db: Database) -> None:
    at = datetime(2026, 11, 25, 21, 0, tzinfo=UTC)
    async with heard(db, PRICES) as queue:
        async with db.system_scope("test.live") as s:
            await notify_prices(s, [Tick("AAPL", Decimal("1.5"), Decimal(1), at, "sim")])
        payload = await asyncio.wait_for(queue.get(), 10)
    assert parse_prices(payload) == {"AAPL": {"price": "1.5", "at": at.isoformat()}}
