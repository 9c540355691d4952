"""The HTTP endpoints: the telemetry path (Prometheus exposition), /healthz and /readyz, behind
the web configuration file's TLS, client certificates and basic auth when one is given."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

from exporter.emit.webconfig import WebGuard

# Probes carry no credentials: the health endpoints answer without basic auth (over TLS still).
_OPEN_PATHS = frozenset({"/healthz", "/readyz"})
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _guarded(guard: WebGuard) -> Middleware:
    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        guard.refresh()
        config = guard.config
        if config is not None:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            if not config.allows_peer(peer):
                return web.Response(status=403, text="client certificate not allowed\n")
            # bcrypt is slow on purpose: checked off the event loop, which the exporter needs
            authorization = request.headers.get("Authorization")
            if request.path not in _OPEN_PATHS and not await asyncio.to_thread(
                config.authorized, authorization
            ):
                return web.Response(
                    status=401,
                    text="Unauthorized\n",
                    headers={"WWW-Authenticate": 'Basic realm="sfn-exporter"'},
                )
        response = await handler(request)
        if config is not None:
            response.headers.update(config.headers)
        return response

    return check


def make_app(
    registry: CollectorRegistry, telemetry_path: str, ready: Callable[[], bool], guard: WebGuard | None = None
) -> web.Application:
    async def metrics(request: web.Request) -> web.Response:
        encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
        body = encoder(registry)
        response = web.Response(body=body)
        response.headers["Content-Type"] = content_type
        return response

    async def healthz(request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def readyz(request: web.Request) -> web.Response:
        if ready():
            return web.Response(text="ready\n")
        return web.Response(
            status=503, text="not ready: no discovery pass yet, or AWS has not answered recently\n"
        )

    async def index(request: web.Request) -> web.Response:
        return web.Response(
            content_type="text/html",
            text=f'<html><body><h1>sfn-otel-exporter</h1><p><a href="{telemetry_path}">Metrics</a> '
            '<a href="/healthz">healthz</a> <a href="/readyz">readyz</a></p></body></html>',
        )

    app = web.Application(middlewares=[_guarded(guard)] if guard is not None and guard.config else [])
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if telemetry_path != "/":
        app.router.add_get("/", index)
    return app


async def serve(
    app: web.Application, host: str, port: int, ssl_context: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port (for port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
