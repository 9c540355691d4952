"""An aiohttp application served on 127.0.0.1 from a thread of its own, for tests and
benchmarks that run the exporter (or its clients) against it: `start`/`stop`, or `with`."""

from __future__ import annotations

import asyncio
import threading
from typing import Any


class ThreadedServer:
    """Subclasses give `make_app`; `port` 0 takes a free one (known once started)."""

    thread_name = "http-server"

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def make_app(self) -> Any:
        """The aiohttp application to serve (made on the server's own loop)."""
        raise NotImplementedError

    def start(self) -> Any:
        self._thread = threading.Thread(target=self._serve, name=self.thread_name, daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"{self.thread_name} did not start")
        return self

    def _serve(self) -> None:
        from aiohttp import web

        async def main() -> None:
            runner = web.AppRunner(await self.make_app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", self.port)
            await site.start()
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._stop = asyncio.Event()
            self._ready.set()
            await self._stop.wait()
            await runner.cleanup()

        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(main())
        self._loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> Any:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
