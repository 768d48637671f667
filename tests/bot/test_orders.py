"""/buy, /sell, the Confirm / Cancel buttons, /orders and /cancel through the fake Discord, as the user sees them."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import asyncpg
import pytest

from bench.fake_discord import option
from tests.bot.conftest import EPHEMERAL, Chat
from tests.helpers import make_pro

UPDATE_MESSAGE = 7
MESSAGE = 4


def buttons(data: dict[str, Any]) -> dict[str, str]:
    """The custom_ids of a message's buttons, by label."""
    return {c["label"]: c["custom_id"] for row in data.get("components", []) for c in row["components"]}


async def propose(chat: Chat, *options: dict[str, Any], command: str = "buy", **kw: Any) -> dict[str, Any]:
    record = await chat.send(chat.fake.payloads.slash_command(command, *options, **kw))
    assert record.callback_type == MESSAGE, record.callback_data
    return record.callback_data


async def click(chat: Chat, custom_id: str, **kw: Any) -> tuple[int | None, dict[str, Any]]:
    record = await chat.send(chat.fake.payloads.button_click(custom_id, **kw))
    return record.callback_type, record.callback_data


async def test_buy_shows_a_private_proposal_with_confirm_and_cancel_and_places_nothing(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "aapl"), option("qty", "2"))
    assert data["flags"] & EPHEMERAL  # in a guild: only the asker sees their order
    embed = data["embeds"][0]
    assert embed["title"] == "Confirm this paper order?"
    assert "**BUY 2 AAPL market (DAY)**" in embed["description"]
    assert "Priced at 200.00" in embed["description"] and "Nothing is placed until you confirm" in embed["description"]
    assert "simulated" in embed["footer"]["text"]
    ids = buttons(data)
    assert set(ids) == {"Confirm", "Cancel"}
    user = chat.fake.payloads.default_user
    assert ids["Confirm"].endswith(f":{user['id']}") and ids["Confirm"].startswith("td:proposal:confirm:")
    assert await chat.count(user, "orders") == 0
    assert await chat.count(user, "order_proposals") == 1


async def test_in_dms_the_proposal_is_a_normal_message(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"), guild=False)
    assert not data.get("flags", 0) & EPHEMERAL
    assert set(buttons(data)) == {"Confirm", "Cancel"}


async def test_confirm_places_exactly_one_order_even_when_the_click_arrives_twice(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "3"))
    confirm = buttons(data)["Confirm"]
    payload = chat.fake.payloads.button_click(confirm)
    # The same click delivered twice (Discord retries, or two bot processes): one order, both answered.
    await asyncio.gather(
        chat.fake.dispatch("INTERACTION_CREATE", payload), chat.fake.dispatch("INTERACTION_CREATE", payload)
    )
    record = await chat.fake.wait_for_callback(int(payload["id"]))
    assert record.callback_type == UPDATE_MESSAGE
    embed = record.callback_data["embeds"][0]
    assert embed["title"] == "Order filled" and "BUY 3 AAPL" in embed["description"]
    assert record.callback_data["components"] == []  # the buttons are gone once decided
    # And a later, separate click on the same button: the same order, not a second one.
    kind, again = await click(chat, confirm)
    assert kind == UPDATE_MESSAGE and again["embeds"][0]["title"] == "Order filled"
    user = chat.fake.payloads.default_user
    assert await chat.count(user, "orders") == 1
    assert await chat.count(user, "fills") == 1


async def test_another_users_click_is_refused_and_places_nothing(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"))
    mallory = chat.fake.payloads.user("mallory")
    kind, reply = await click(chat, buttons(data)["Confirm"], who=mallory)
    assert kind == MESSAGE and reply["flags"] & EPHEMERAL
    assert "Only the person who asked" in reply["content"]
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0
    # A forged custom_id naming mallory as the owner still can't reach alice's proposal: RLS hides it.
    forged = buttons(data)["Confirm"].rsplit(":", 1)[0] + f":{mallory['id']}"
    kind, reply = await click(chat, forged, who=mallory)
    assert kind == MESSAGE and reply["flags"] & EPHEMERAL and "does not exist" in reply["content"]
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0


async def test_an_expired_proposal_is_refused(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"))
    chat.clock.advance(minutes=11)
    await chat.set_price("AAPL", "200.00")  # fresh price: only the expiry stands in the way
    kind, reply = await click(chat, buttons(data)["Confirm"])
    assert kind == MESSAGE and reply["flags"] & EPHEMERAL
    assert "expired" in reply["content"] and "nothing was placed" in reply["content"]
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0


async def test_price_drift_beyond_the_bound_asks_again(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"))
    await chat.set_price("AAPL", "204.00")  # +2%: beyond the default 1%
    kind, reply = await click(chat, buttons(data)["Confirm"])
    assert kind == UPDATE_MESSAGE
    description = reply["embeds"][0]["description"]
    assert "The price moved 2.00%" in description and "Priced at 204.00" in description
    new_ids = buttons(reply)
    assert new_ids["Confirm"] != buttons(data)["Confirm"]
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0
    kind, done = await click(chat, new_ids["Confirm"])
    assert kind == UPDATE_MESSAGE and done["embeds"][0]["title"] == "Order filled"
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 1


async def test_cancel_button_places_nothing_and_confirm_after_it_is_refused(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"))
    kind, reply = await click(chat, buttons(data)["Cancel"])
    assert kind == UPDATE_MESSAGE and reply["content"] == "Canceled: nothing was placed." and reply["components"] == []
    kind, reply = await click(chat, buttons(data)["Confirm"])
    assert kind == MESSAGE and "canceled" in reply["content"]
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 0


@pytest.mark.parametrize(
    ("options", "kind", "limit", "stop", "tif"),
    [
        ((), "market", None, None, "day"),
        ((option("type", "limit"), option("limit", "150"), option("tif", "gtc")), "limit", "150.00", None, "gtc"),
        ((option("type", "stop"), option("stop", "250")), "stop", None, "250.00", "day"),
        ((option("type", "stop_limit"), option("stop", "250"), option("limit", "251.5")), "stop-limit", "251.50",
         "250.00", "day"),
        ((option("tif", "ioc"),), "market", None, None, "ioc"),
    ],
)  # fmt: skip
async def test_every_order_type_and_time_in_force_is_proposed_as_asked(
    chat: Chat, options: tuple[dict[str, Any], ...], kind: str, limit: str | None, stop: str | None, tif: str
) -> None:
    await make_pro(chat.db, await chat.user_id(chat.fake.payloads.default_user), chat.clock() + timedelta(days=30))
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"), *options)
    text = data["embeds"][0]["description"]
    expected = f"BUY 1 AAPL {kind}" + (f" stop {stop}" if stop else "") + (f" limit {limit}" if limit else "")
    assert f"**{expected} ({tif.upper()})**" in text
    kind_, done = await click(chat, buttons(data)["Confirm"])
    assert kind_ == UPDATE_MESSAGE
    assert done["embeds"][0]["title"] in ("Order filled", "Order new")


async def test_fractional_crypto_sell_after_buy(chat: Chat) -> None:
    data = await propose(chat, option("symbol", "BTC-USD"), option("qty", "0.015"))
    await click(chat, buttons(data)["Confirm"])
    data = await propose(chat, option("symbol", "BTC-USD"), option("qty", "0.005"), command="sell")
    assert "**SELL 0.005 BTC-USD market (DAY)**" in data["embeds"][0]["description"]
    kind, done = await click(chat, buttons(data)["Confirm"])
    assert kind == UPDATE_MESSAGE and done["embeds"][0]["title"] == "Order filled"
    record = await chat.send(chat.fake.payloads.slash_command("positions"))
    assert "**BTC-USD** 0.01 @ avg" in record.callback_data["embeds"][0]["description"]


BAD_INPUT = [
    ((option("symbol", "AAPL"), option("qty", "0")), "greater than zero"),
    ((option("symbol", "AAPL"), option("qty", "-5")), "greater than zero"),
    ((option("symbol", "AAPL"), option("qty", "NaN")), "finite number"),
    ((option("symbol", "AAPL"), option("qty", "1e308")), "too large"),
    ((option("symbol", "AAPL"), option("qty", "ten")), "must be a number"),
    ((option("symbol", "AA PL"), option("qty", "1")), "is not a symbol"),
    ((option("symbol", "📈"), option("qty", "1")), "is not a symbol"),
    ((option("symbol", "ZZZZ"), option("qty", "1")), "not a symbol TradeDesk trades"),
    ((option("symbol", "AAPL"), option("qty", "1"), option("limit", "190")), "takes no limit price"),
    ((option("symbol", "AAPL"), option("qty", "1"), option("type", "limit")), "needs a limit price"),
    ((option("symbol", "AAPL"), option("qty", "0.5")), "multiples of 1"),
    ((option("symbol", "AAPL"), option("qty", "100000")), "buying power"),
    ((option("symbol", "AAPL"), option("qty", "1"), option("type", "limit"), option("limit", "1.001")), "steps of"),
]


@pytest.mark.parametrize(("options", "message"), BAD_INPUT)
async def test_bad_order_input_gets_a_clear_private_error_and_writes_nothing(
    chat: Chat, options: tuple[dict[str, Any], ...], message: str
) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("buy", *options))
    assert record.callback_type == MESSAGE and record.callback_flags & EPHEMERAL
    assert message.lower() in record.callback_data["content"].lower()
    user = chat.fake.payloads.default_user
    assert await chat.count(user, "order_proposals") == 0
    assert await chat.count(user, "orders") == 0


async def rest_a_limit_order(chat: Chat, who: dict[str, Any] | None = None) -> str:
    kw = {"who": who} if who else {}
    data = await propose(
        chat, option("symbol", "MSFT"), option("qty", "1"), option("type", "limit"), option("limit", "350"), **kw
    )
    await click(chat, buttons(data)["Confirm"], **kw)
    record = await chat.send(chat.fake.payloads.autocomplete("cancel", option("order", "ms", focused=True), **kw))
    assert record.callback_type == 8  # APPLICATION_COMMAND_AUTOCOMPLETE_RESULT
    choices = record.callback_data["choices"]
    assert len(choices) == 1 and "BUY 1 MSFT limit limit 350.00" in choices[0]["name"]
    value: str = choices[0]["value"]
    return value


async def test_orders_lists_open_orders_and_cancel_by_autocomplete(chat: Chat) -> None:
    order_id = await rest_a_limit_order(chat)
    record = await chat.send(chat.fake.payloads.slash_command("orders"))
    assert record.callback_flags & EPHEMERAL
    embed = record.callback_data["embeds"][0]
    assert embed["title"] == "Orders — open" and order_id[:8] in embed["description"]
    record = await chat.send(chat.fake.payloads.slash_command("cancel", option("order", order_id)))
    assert record.callback_flags & EPHEMERAL
    assert record.callback_data["embeds"][0]["title"] == "Order canceled"
    record = await chat.send(chat.fake.payloads.slash_command("orders", option("status", "canceled")))
    assert order_id[:8] in record.callback_data["embeds"][0]["description"]
    record = await chat.send(chat.fake.payloads.slash_command("orders"))
    assert record.callback_data["embeds"][0]["description"] == "No open orders."


async def test_cancel_refuses_unknown_and_other_users_order_ids(chat: Chat) -> None:
    mallory = chat.fake.payloads.user("mallory")
    malloys_order = await rest_a_limit_order(chat, who=mallory)
    # Alice's autocomplete never offers mallory's order...
    record = await chat.send(chat.fake.payloads.autocomplete("cancel", option("order", "", focused=True)))
    assert record.callback_data["choices"] == []
    # ...and typing its id, or garbage, gets the same private "no such order".
    for typed in (malloys_order, "not-an-id", "00000000-0000-0000-0000-000000000000"):
        record = await chat.send(chat.fake.payloads.slash_command("cancel", option("order", typed)))
        assert record.callback_type == MESSAGE and record.callback_flags & EPHEMERAL
        assert "no" in record.callback_data["content"].lower()
    record = await chat.send(chat.fake.payloads.slash_command("orders", who=mallory))
    assert malloys_order[:8] in record.callback_data["embeds"][0]["description"]  # still open


async def test_symbol_autocomplete_offers_listed_instruments(chat: Chat) -> None:
    record = await chat.send(chat.fake.payloads.autocomplete("buy", option("symbol", "bt", focused=True)))
    values = [c["value"] for c in record.callback_data["choices"]]
    assert values[:2] == ["BTC-USD", "BTC-USDT"]
    record = await chat.send(chat.fake.payloads.autocomplete("buy", option("symbol", "apple", focused=True)))
    assert [c["value"] for c in record.callback_data["choices"]] == ["AAPL"]


def test_qty_is_never_a_float_option() -> None:
    # Discord's number options are JSON doubles: quantities and prices must be string options.
    from bot.cogs.orders import OrdersCog

    for command in (OrdersCog.buy, OrdersCog.sell):
        kinds = {p.name: p.type.name for p in command.parameters}
        assert kinds["qty"] == kinds["limit"] == kinds["stop"] == "string"


async def test_stop_orders_are_a_pro_feature(chat: Chat) -> None:
    record = await chat.send(
        chat.fake.payloads.slash_command("buy", option("symbol", "AAPL"), option("qty", "1"), option("type", "stop"),
                                         option("stop", "250"))
    )  # fmt: skip
    assert record.callback_flags & EPHEMERAL
    assert record.callback_data["content"].startswith(
        "Stop orders are a Pro feature; your free plan has limit and market"
    )
    assert await chat.count(chat.fake.payloads.default_user, "order_proposals") == 0


async def test_a_slow_confirm_is_acknowledged_first_and_still_places_one_order(chat: Chat, db_url: str) -> None:
    data = await propose(chat, option("symbol", "AAPL"), option("qty", "1"))
    user_id = await chat.user_id(chat.fake.payloads.default_user)
    blocker = await asyncpg.connect(db_url)  # holds the portfolio's row lock, as a long fill would
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT set_config('role', 'tradedesk_system', true)")
        await blocker.execute("SELECT 1 FROM tradedesk.portfolios WHERE user_id = $1 FOR UPDATE", user_id)
        record = await chat.send(chat.fake.payloads.button_click(buttons(data)["Confirm"]))
        assert record.callback_type == 6  # DEFERRED_UPDATE_MESSAGE: acknowledged within Discord's 3 s
        await tx.rollback()
    finally:
        await blocker.close()
    edit = await chat.fake.wait_for_request(
        lambda r: r.method == "PATCH" and r.path.endswith("/messages/@original"), include_recorded=True
    )
    assert edit.json is not None and edit.json["embeds"][0]["title"] == "Order filled"
    assert await chat.count(chat.fake.payloads.default_user, "orders") == 1
