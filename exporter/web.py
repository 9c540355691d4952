"""The HTTP endpoints: the telemetry path (Prometheus exposition), /healthz and /readyz."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder


def make_app(registry: CollectorRegistry, telemetry_path: str, ready: Callable[[], bool]) -> web.Application:
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

    app = web.Application()
    app.router.add_get(telemetry_path, metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if telemetry_path != "/":
        app.router.add_get("/", index)
    return app


async def serve(app: web.Application, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; returns the runner (to clean up) and the bound port (for port 0)."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    server = site._server
    sockets = getattr(server, "sockets", None) or []
    bound = sockets[0].getsockname()[1] if sockets else port
    return runner, int(bound)
