"""Serving a bench's web app on a free loopback port, as `tradedesk run` serves it (AppRunner, no access log)."""

from __future__ import annotations

import socket

from aiohttp import web


async def serve(app: web.Application, *, backlog: int = 2048) -> tuple[web.AppRunner, str]:
    """Start `app` on 127.0.0.1 and a free port; returns the runner (clean it up) and the base URL."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock, backlog=backlog).start()
    return runner, f"http://127.0.0.1:{port}"
