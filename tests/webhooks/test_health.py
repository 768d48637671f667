"""GET /healthz of the web side-app, in process, against the real embedded Postgres (and against none)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from core.config import Settings
from core.db.database import Database
from tests.conftest import PgCluster
from webhooks.app import create_app


def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", web_port=0)


async def get_healthz(database: Database, tmp_path: Path) -> tuple[int, str, object]:
    app = create_app(settings(tmp_path), database=database, version="test")
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        return resp.status, resp.content_type, await resp.json()


async def test_healthz_answers_ok_when_the_database_answers(db: Database, tmp_path: Path) -> None:
    status, content_type, body = await get_healthz(db, tmp_path)
    assert status == 200
    assert content_type == "application/json"
    assert body == {"status": "ok", "db": "ok", "version": "test"}


def unavailable_url(which: str, pg: PgCluster, tmp_path: Path) -> str:
    if which == "missing_database":
        return pg.url("no_such_database")  # the server answers, the database isn't there
    return f"postgresql://tradedesk@/tradedesk?host={tmp_path / 'no-such-socket-dir'}"  # nothing to connect to


@pytest.mark.parametrize("which", ["missing_database", "missing_socket_dir"])
async def test_healthz_is_degraded_when_the_database_is_unavailable(which: str, pg: PgCluster, tmp_path: Path) -> None:
    database = Database(unavailable_url(which, pg, tmp_path), pool_size=1, max_overflow=0)
    try:
        status, content_type, body = await get_healthz(database, tmp_path)
    finally:
        await database.dispose()
    assert status == 503
    assert content_type == "application/json"
    assert body == {"status": "degraded", "db": "unavailable", "version": "test"}


async def test_healthz_turns_degraded_when_the_database_goes_away(pg: PgCluster, tmp_path: Path) -> None:
    name = await pg.create_database()
    database = Database(pg.url(name), pool_size=1, max_overflow=0)
    try:
        assert (await get_healthz(database, tmp_path))[0] == 200  # the pool now holds a live connection
        await pg.drop_database(name)  # WITH (FORCE): terminates that connection
        status, _, body = await get_healthz(database, tmp_path)
    finally:
        await database.dispose()
        await pg.drop_database(name)
    assert status == 503
    assert body == {"status": "degraded", "db": "unavailable", "version": "test"}


async def test_healthz_does_not_hang_on_a_database_that_never_answers(tmp_path: Path) -> None:
    """A peer that accepts TCP and then says nothing: the check gives up (503) instead of hanging the probe."""
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    database = Database(f"postgresql://u@127.0.0.1:{port}/db", pool_size=1, max_overflow=0)
    try:
        status, _, body = await asyncio.wait_for(get_healthz(database, tmp_path), 15)
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
        await database.dispose()
    assert accepted, "the health check should have tried to connect"
    assert status == 503
    assert body == {"status": "degraded", "db": "unavailable", "version": "test"}


@pytest.mark.parametrize("feed", ["ok", "stale", "down"])
async def test_healthz_reports_the_market_feed_without_failing_on_it(feed: str, db: Database, tmp_path: Path) -> None:
    """The web side works from the database, so a feed that is down shows in the body, not in the status code."""
    app = create_app(settings(tmp_path), database=db, version="test", feed_status=lambda: feed)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/healthz")
        assert (resp.status, await resp.json()) == (200, {"status": "ok", "db": "ok", "version": "test", "feed": feed})
