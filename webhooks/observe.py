"""The web app's observability: a request id and metrics for every request, and GET /metrics.

`observe` is the outermost middleware. It takes the caller's X-Request-Id when it is sane (a reverse proxy's),
else makes one; sets it as the log context for everything the request does; returns it in the response's
X-Request-Id; and counts the request in tradedesk_http_requests / tradedesk_http_request_duration_seconds by its
route *template* (/orders/{id}/cancel, never the raw path: ids would make the label set unbounded; "unmatched" for
a path no route serves).

GET /metrics serves every TradeDesk metric of this process (core/metrics.py) in the Prometheus text format. In
`tradedesk run` the worker shares this process, so its feed, alert and dispatcher metrics are here too.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from core import metrics
from core.logcontext import new_request_id, reset_request_id, sane_request_id, set_request_id

REQUEST_ID_HEADER = "X-Request-Id"
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def route_of(request: web.Request) -> str:
    """The matched route's template (its canonical path), or "unmatched"."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = sane_request_id(request.headers.get(REQUEST_ID_HEADER)) or new_request_id()
    token = set_request_id(rid)
    started = time.perf_counter()
    status = 500
    try:
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            status = exc.status
            exc.headers[REQUEST_ID_HEADER] = rid
            raise
        status = response.status
        if not response.prepared:  # a websocket or a streamed response has sent its headers already
            response.headers[REQUEST_ID_HEADER] = rid
        return response
    finally:
        route = route_of(request)
        method = request.method if request.method in _METHODS else "other"
        metrics.HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
        metrics.HTTP_REQUESTS.labels(method, route, str(status)).inc()
        reset_request_id(token)


async def metrics_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=metrics.render(), headers={"Content-Type": metrics.CONTENT_TYPE})


def add_metrics_route(app: web.Application) -> None:
    app.router.add_get("/metrics", metrics_endpoint)
