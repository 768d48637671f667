"""/dashboard through the fake Discord: a private reply with a link button (never a DM through the outbox), and the
link signs that Discord user in to the real web app."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from aiohttp.test_utils import TestClient, TestServer

from core.config import Settings
from tests.bot.conftest import EPHEMERAL, Chat
from tests.bot.test_billing import link_of
from webhooks.app import create_app


async def test_dashboard_replies_privately_with_a_sign_in_link_that_works_once(chat: Chat, tmp_path: Path) -> None:
    record = await chat.send(chat.fake.payloads.slash_command("dashboard"))
    assert record.callback_type == 4 and record.callback_flags & EPHEMERAL
    assert "works once" in record.callback_data["content"]
    link = link_of(record.callback_data)
    assert link.startswith("http://127.0.0.1:8080/login/")
    assert await chat.count(chat.fake.payloads.default_user, "notifications") == 0  # not through the outbox
    assert await chat.count(chat.fake.payloads.default_user, "login_tokens") == 1

    app = create_app(Settings(data_dir=tmp_path / "data", web_port=0), database=chat.db, version="test",
                     desk=chat.bot.desk)  # fmt: skip
    async with TestClient(TestServer(app)) as client:
        path = urlsplit(link).path
        signed_in = await client.post(path, allow_redirects=False)
        assert signed_in.status == 303
        overview = await client.get("/")
        assert overview.status == 200 and "Main portfolio" in await overview.text()
        assert (await client.post(path, allow_redirects=False)).status == 400
