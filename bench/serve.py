"""Serving a web app on a free loopback port, as `tradedesk run` serves it (AppRunner, no access log): the
benches' apps and the local fakes of Discord, OpenAI and Stripe."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from aiohttp import web


@dataclass(frozen=True)
class Served:
    runner: web.AppRunner  # clean it up to stop serving
    port: int

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


async def serve(app: web.Application, *, backlog: int = 2048, shutdown_timeout: float = 60.0) -> Served:
    """Start `app` on 127.0.0.1 and a free port."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=shutdown_timeout)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock, backlog=backlog).start()
    return Served(runner, sock.getsockname()[1])
