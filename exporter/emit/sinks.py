"""SpanSink: batches spans from many polls into OTLP requests, sent off the event loop.

`await sink.export(spans)` returns once the request carrying those spans succeeded, and raises
ExportFailed otherwise; the caller advances its cursor only after the former. Spans are queued as
span records (`ExecutionSpans`): an exporter that `takes_records` encodes them itself, any other
is given the SDK's `ReadableSpan`s, made in the export thread."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from exporter.emit.health import HealthMetrics
from exporter.emit.otlp import ExecutionSpans, chunks, readable_spans

log = logging.getLogger(__name__)


class ExportFailed(Exception):
    """The OTLP backend did not take the spans; they are to be sent again."""


@dataclass
class _Batch:
    spans: list[ExecutionSpans] = field(default_factory=list)
    size: int = 0  # spans in all
    waiters: list[asyncio.Future[None]] = field(default_factory=list)


class SpanSink:
    """One OTLP exporter, called from one worker thread, with spans gathered into batches of up
    to `max_spans` or whatever arrived within `linger_s`."""

    def __init__(
        self,
        exporter: SpanExporter | None,
        health: HealthMetrics,
        max_spans: int = 512,
        linger_s: float = 0.2,
    ) -> None:
        self._exporter = exporter
        self._health = health
        self._max_spans = max_spans
        self._linger_s = linger_s
        self._pending = _Batch()
        self._wake = asyncio.Event()
        self._closing = False
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="otlp-export")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="span-sink")

    async def export(self, spans: ExecutionSpans) -> None:
        if not spans.records:
            return
        if self._exporter is None:  # OTLP switched off: metrics only
            return
        if self._closing:
            raise ExportFailed("the exporter is shutting down")
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.spans.append(spans)
        self._pending.size += len(spans.records)
        self._pending.waiters.append(waiter)
        self._wake.set()
        await waiter

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            if not self._closing and self._pending.size < self._max_spans and self._linger_s:
                await asyncio.sleep(self._linger_s)
            batch, self._pending = self._pending, _Batch()
            self._wake.clear()
            if batch.spans:
                await self._send(batch)
            if self._closing and not self._pending.spans:
                return

    async def _send(self, batch: _Batch) -> None:
        assert self._exporter is not None
        loop = asyncio.get_running_loop()
        error: BaseException | None = None
        sent = 0
        for chunk, size in chunks(batch.spans, self._max_spans):
            try:
                result = await loop.run_in_executor(self._thread, self._send_chunk, chunk)
            except Exception as exc:  # an exporter bug must not stop the sink
                log.exception("OTLP export raised")
                result, error = SpanExportResult.FAILURE, exc
            if result == SpanExportResult.SUCCESS:
                self._health.spans_exported.inc(size)
                sent += size
            else:
                self._health.spans_failed.inc(batch.size - sent)
                error = error or ExportFailed(f"OTLP export of {size} spans failed")
                break
        for waiter in batch.waiters:
            if waiter.done():
                continue
            if error is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(ExportFailed(str(error)))

    def _send_chunk(self, chunk: Sequence[ExecutionSpans]) -> SpanExportResult:
        """In the export thread: the chunk as records to an exporter that takes them, else as
        the SDK's spans."""
        assert self._exporter is not None
        if getattr(self._exporter, "takes_records", False):
            return self._exporter.export(chunk)  # type: ignore[arg-type]
        return self._exporter.export(readable_spans(chunk))

    async def close(self, timeout_s: float) -> None:
        """Send what is queued (within `timeout_s`), then shut the exporter down."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), timeout_s)
            except TimeoutError:
                log.warning("spans still queued after %.0fs of shutdown were not sent", timeout_s)
                self._task.cancel()
        if self._exporter is not None:
            await self._shut_down(self._exporter, max(1.0, timeout_s))
        self._thread.shutdown(wait=False)

    @staticmethod
    async def _shut_down(exporter: SpanExporter, timeout_s: float) -> None:
        """exporter.shutdown() in a thread of its own (the export thread may still hang in a
        request), waited for at most `timeout_s`: a hung backend cannot hold the exit."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finish() -> None:
            if not done.done():
                done.set_result(None)

        def shut() -> None:
            try:
                exporter.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone by then
                    loop.call_soon_threadsafe(finish)

        threading.Thread(target=shut, name="otlp-shutdown", daemon=True).start()
        try:
            await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            log.warning("the OTLP exporter did not shut down within %.0fs; exiting without it", timeout_s)
