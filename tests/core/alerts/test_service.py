"""Creating, listing and deleting alerts under user_scope: validation, the plan quota, tenancy and NOTIFY."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from core.alerts.service import AlreadyCrossed, create_alert, delete_alert, list_alerts
from core.billing.entitlements import FREE, PRO, entitlements
from core.db.database import Database, raw_connection
from core.db.listen import CHANGES
from core.errors import DomainError, EntitlementRequired, InvalidInput, NotFound
from tests.core.alerts.conftest import make_pro
from tests.core.orders.conftest import Clock

D = Decimal


async def count_alerts(db: Database) -> int:
    async with db.system_scope("test.count") as s:
        n: int = await (await raw_connection(s)).fetchval("SELECT count(*) FROM alerts")
    return n


async def test_each_kind_is_created_with_its_threshold(db: Database, alice: UUID, clock: Clock) -> None:
    async with db.user_scope(alice) as s:
        above = await create_alert(s, "aapl", "above", D("210.50"), note="  breakout  ", now=clock())
        below = await create_alert(s, "MSFT", "below", "390", now=clock())
        up = await create_alert(s, "BTC-USD", "percent", D("5"), now=clock())
        down = await create_alert(s, "AAPL", "percent", D("-2.5"), recurring=True, cooldown=600, now=clock())
    assert (above.symbol, above.direction, above.kind, above.threshold, above.note) == (
        "AAPL", "above", "price", D("210.50"), "breakout"
    )  # fmt: skip
    assert (below.direction, below.threshold, below.reference_price) == ("below", D(390), None)
    assert (up.direction, up.kind, up.threshold, up.reference_price, up.percent) == (
        "above", "percent", D("94500"), D("90000"), D(5)
    )  # fmt: skip
    assert (down.direction, down.threshold, down.recurring, down.cooldown_seconds) == ("below", D(195), True, 600)
    async with db.user_scope(alice) as s:
        listed = await list_alerts(s)
    assert {a.id for a in listed} == {above.id, below.id, up.id, down.id}


async def test_an_alert_that_would_fire_at_once_is_refused_with_a_message_saying_so(
    db: Database, alice: UUID, clock: Clock
) -> None:
    with pytest.raises(AlreadyCrossed, match=r"AAPL is already at 200, at or above 199\.99"):
        async with db.user_scope(alice) as s:
            await create_alert(s, "AAPL", "above", D("199.99"), now=clock())
    with pytest.raises(AlreadyCrossed, match="at or below 200"):
        async with db.user_scope(alice) as s:
            await create_alert(s, "AAPL", "below", D("200"), now=clock())
    with pytest.raises(AlreadyCrossed):  # the quote the transport passes wins over last_prices
        async with db.user_scope(alice) as s:
            await create_alert(s, "AAPL", "above", D("205"), last_price=D("206"), now=clock())
    assert await count_alerts(db) == 0


BAD: list[tuple[dict[str, Any], str]] = [
    ({"symbol": "NOPE", "kind": "above", "value": "10"}, "Unknown symbol"),
    ({"symbol": "", "kind": "above", "value": "10"}, "Unknown symbol"),
    ({"symbol": "AAPL", "kind": "sideways", "value": "10"}, "Unknown alert kind"),
    ({"symbol": "AAPL", "kind": "above", "value": "0"}, "greater than zero"),
    ({"symbol": "AAPL", "kind": "below", "value": "-5"}, "greater than zero"),
    ({"symbol": "AAPL", "kind": "above", "value": "1e30"}, "too large"),
    ({"symbol": "AAPL", "kind": "above", "value": "10000000001"}, "too large"),
    ({"symbol": "AAPL", "kind": "above", "value": "NaN"}, "finite"),
    ({"symbol": "AAPL", "kind": "above", "value": "Infinity"}, "finite"),
    ({"symbol": "AAPL", "kind": "above", "value": "abc"}, "not a number"),
    ({"symbol": "AAPL", "kind": "above", "value": "210.000000001"}, "decimal places"),
    ({"symbol": "AAPL", "kind": "percent", "value": "0"}, "percent move of 0"),
    ({"symbol": "AAPL", "kind": "percent", "value": "-100"}, "100% or more"),
    ({"symbol": "AAPL", "kind": "percent", "value": "-150"}, "100% or more"),
    ({"symbol": "AAPL", "kind": "percent", "value": "1e30"}, "at most 10000%"),
    ({"symbol": "AAPL", "kind": "percent", "value": "1.00001"}, "4 decimal places"),
    ({"symbol": "AAPL", "kind": "above", "value": "210", "expires_in": -1}, "in the past"),
    ({"symbol": "AAPL", "kind": "above", "value": "210", "note": "x" * 301}, "the most is 300"),
    ({"symbol": "AAPL", "kind": "above", "value": "210", "cooldown": 60}, "only applies to a recurring"),
    ({"symbol": "AAPL", "kind": "above", "value": "210", "recurring": True, "cooldown": 5}, "cooldown must be"),
]


@pytest.mark.parametrize(("args", "message"), BAD, ids=[f"{a['kind']}-{a['value'][:12]}-{m}" for a, m in BAD])
async def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(
    db: Database, alice: UUID, clock: Clock, args: dict[str, Any], message: str
) -> None:
    args = dict(args)
    expires_in = args.pop("expires_in", None)
    if expires_in is not None:
        args["expires_at"] = clock() + timedelta(seconds=expires_in)
    with pytest.raises(InvalidInput, match=message) as raised:
        async with db.user_scope(alice) as s:
            await create_alert(s, now=clock(), **args)
    assert raised.value.message and isinstance(raised.value, DomainError)
    assert await count_alerts(db) == 0


async def test_the_quota_error_names_the_plan_and_pro_allows_more(db: Database, alice: UUID, clock: Clock) -> None:
    async with db.user_scope(alice) as s:
        assert await entitlements(s) == FREE
        for i in range(FREE.alert_quota):
            await create_alert(s, "AAPL", "above", D(300 + i), now=clock())
    with pytest.raises(EntitlementRequired, match=r"Your free plan allows 10 active alerts and you have 10") as raised:
        async with db.user_scope(alice) as s:
            await create_alert(s, "AAPL", "above", D(400), now=clock())
    assert raised.value.code == "entitlement_required"
    assert await count_alerts(db) == FREE.alert_quota
    await make_pro(db, alice, clock)
    async with db.user_scope(alice) as s:
        assert await entitlements(s) == PRO
        await create_alert(s, "AAPL", "above", D(400), now=clock())
    assert await count_alerts(db) == FREE.alert_quota + 1


async def test_a_pro_subscription_of_another_user_does_not_count(
    db: Database, alice: UUID, bob: UUID, clock: Clock
) -> None:
    await make_pro(db, bob, clock)
    async with db.user_scope(alice) as s:
        assert (await entitlements(s)).plan == "free"
    async with db.user_connection(bob) as conn:
        assert (await entitlements(conn)).plan == "pro"


async def test_delete_own_only_and_another_users_alert_is_not_found(
    db: Database, alice: UUID, bob: UUID, clock: Clock
) -> None:
    async with db.user_scope(alice) as s:
        mine = await create_alert(s, "AAPL", "above", D(250), now=clock())
    with pytest.raises(NotFound):
        async with db.user_scope(bob) as s:
            await delete_alert(s, mine.id)
    with pytest.raises(NotFound):
        async with db.user_scope(alice) as s:
            await delete_alert(s, uuid4())
    assert await count_alerts(db) == 1
    async with db.user_scope(bob) as s:
        assert await list_alerts(s) == []
    async with db.user_scope(alice) as s:
        await delete_alert(s, mine.id)
    assert await count_alerts(db) == 0


async def test_create_and_delete_notify_when_they_commit(db: Database, alice: UUID, clock: Clock) -> None:
    got: asyncio.Queue[str] = asyncio.Queue()
    conn = await db.connect_raw()
    try:
        await conn.add_listener(CHANGES, lambda *a: got.put_nowait(a[3]))
        with pytest.raises(RuntimeError):
            async with db.user_scope(alice) as s:
                await create_alert(s, "AAPL", "above", D(250), now=clock())
                raise RuntimeError("rolled back")
        async with db.user_scope(alice) as s:
            alert = await create_alert(s, "AAPL", "above", D(250), now=clock())
        assert await asyncio.wait_for(got.get(), 5) == f"alerts:{alert.id}"
        async with db.user_scope(alice) as s:
            await delete_alert(s, alert.id)
        assert await asyncio.wait_for(got.get(), 5) == f"alerts:{alert.id}"
        assert got.empty()
    finally:
        await conn.close()


@pytest.mark.parametrize(
    ("percent", "direction", "threshold"),
    [
        ("0.0001", "above", "200.01"),  # 200.0002: up to the tick (to the nearest, it would be 200 itself)
        ("-0.0001", "below", "199.99"),  # 199.9998: down to the tick
        ("1.0025", "above", "202.01"),  # 202.005: half-even would round down, below the asked move
        ("-1.0025", "below", "197.99"),  # 197.995: half-even would round up
        ("5", "above", "210"),  # exact: unchanged
    ],
)
async def test_a_percent_level_rounds_away_from_the_price_to_the_tick(
    db: Database, alice: UUID, clock: Clock, percent: str, direction: str, threshold: str
) -> None:
    async with db.user_scope(alice) as s:
        alert = await create_alert(s, "AAPL", "percent", D(percent), now=clock())
    assert (alert.direction, alert.threshold, alert.reference_price, alert.checked_price) == (
        direction, D(threshold), D(200), D(200)
    )  # fmt: skip
