"""The daily digest: once a day at the user's local time, only for users who asked, through the outbox."""

from __future__ import annotations

from datetime import UTC, datetime, time
from decimal import Decimal
from uuid import UUID

import pytest

from core.db.database import Database, raw_connection
from core.db.identity import resolve_identity
from core.market.sessions import MarketHours
from core.notifications.digest import enqueue_digests, set_digest_time
from core.orders.broker import OrderRequest, OrderType, Side
from core.orders.paper import BrokerCosts, PaperBroker
from tests.core.db.world import seed_reference
from tests.core.orders.conftest import new_trader

NOW = datetime(2026, 11, 24, 23, 1, tzinfo=UTC)


@pytest.fixture
async def priced(db: Database) -> PaperBroker:
    """AAPL at 200.00 (as of NOW) and a broker that trades around the clock with a 10 bp fee and 5 bp slippage."""
    await seed_reference(db)
    async with db.system_scope("test.set_price") as s:
        await (await raw_connection(s)).execute(
            "INSERT INTO last_prices (symbol, price, ts, source) VALUES ('AAPL', 200.00, $1, 'sim')", NOW
        )
    return PaperBroker(MarketHours(always_open=True, clock=lambda: NOW), BrokerCosts(Decimal(10), Decimal(5)))


async def _digests(db: Database, user: UUID) -> list[tuple[str, str, str]]:
    async with db.user_scope(user) as s:
        rows = await (await raw_connection(s)).fetch(
            "SELECT dedupe_key, title, body FROM notifications WHERE kind = 'system' ORDER BY id"
        )
    return [(r["dedupe_key"], r["title"], r["body"]) for r in rows]


async def _run(db: Database, at: datetime) -> int:
    async with db.system_scope("notifications.digest") as s:
        return await enqueue_digests(s, at)


async def test_a_digest_once_a_day_at_the_users_local_time(db: Database, priced: PaperBroker) -> None:
    user, pf = await new_trader(db, "early-bird", cash="10000")
    async with db.user_scope(user) as s:
        await (await raw_connection(s)).execute("UPDATE users SET timezone = 'Asia/Tokyo'")
        await set_digest_time(s, time(8, 0))
        await priced.submit(s, OrderRequest(pf, "AAPL", Side.BUY, OrderType.MARKET, Decimal(10)))
    # 07:59 in Tokyo is 22:59 UTC the day before.
    assert await _run(db, datetime(2026, 11, 24, 22, 59, tzinfo=UTC)) == 0
    assert await _run(db, datetime(2026, 11, 24, 23, 1, tzinfo=UTC)) == 1
    assert await _run(db, datetime(2026, 11, 25, 3, 0, tzinfo=UTC)) == 0  # same local day: already sent
    assert await _run(db, datetime(2026, 11, 25, 23, 30, tzinfo=UTC)) == 1  # the next morning in Tokyo
    digests = await _digests(db, user)
    assert [d[0] for d in digests] == ["digest:2026-11-25", "digest:2026-11-26"]
    title, body = digests[0][1], digests[0][2]
    # 10,000 - 2,003.00 (10 x 200.10 + 2.00 fee) + 10 x 200.00 at the last price
    assert title == "Your TradeDesk digest for Wednesday 25 Nov"
    assert "Equity across your paper portfolios: $9,997.00" in body and "open order(s)" in body


async def test_only_users_who_asked_get_one_and_they_can_stop(db: Database) -> None:
    asked = await resolve_identity(db, console_handle="asked")
    await resolve_identity(db, console_handle="silent")
    async with db.user_scope(asked) as s:
        await set_digest_time(s, time(0, 0))
    assert await _run(db, datetime(2026, 11, 25, 12, 0, tzinfo=UTC)) == 1
    async with db.user_scope(asked) as s:
        await set_digest_time(s, None)
    assert await _run(db, datetime(2026, 11, 26, 12, 0, tzinfo=UTC)) == 0
    assert len(await _digests(db, asked)) == 1


async def test_an_invalid_timezone_skips_that_user_not_everyone(db: Database) -> None:
    await seed_reference(db)
    good, _ = await new_trader(db, "good", cash="100")
    bad, _ = await new_trader(db, "bad", cash="100")
    for user in (good, bad):
        async with db.user_scope(user) as s:
            await set_digest_time(s, time(8, 0))
    async with db.system_scope("test.user_settings") as s:
        await (await raw_connection(s)).execute("UPDATE users SET timezone = 'Mars/Olympus_Mons' WHERE id = $1", bad)

    async with db.system_scope("notifications.digest") as s:
        assert await enqueue_digests(s, datetime(2026, 11, 25, 9, 0, tzinfo=UTC)) == 1

    [(key, _, _)] = await _digests(db, good)
    assert key == "digest:2026-11-25"
    assert await _digests(db, bad) == []
