"""A real OTLP trace receiver for tests: gRPC (opentelemetry-proto's service) and HTTP/protobuf,
bound to 127.0.0.1, keeping every span it receives."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc


@dataclass
class ReceivedSpan:
    trace_id: str
    span_id: str
    parent_span_id: str | None
    name: str
    start_ns: int
    end_ns: int
    status_code: int
    status_message: str
    attributes: dict[str, Any]
    resource: dict[str, Any]
    links: list[tuple[str, str]] = field(default_factory=list)  # (trace id, span id), hex


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


@dataclass
class OtlpReceiver:
    spans: list[ReceivedSpan] = field(default_factory=list)
    requests: int = 0
    fail_next: int = 0  # answer this many requests with UNAVAILABLE / 503
    refuse: Callable[[ReceivedSpan], bool] | None = None  # requests holding such a span: UNAVAILABLE
    refused: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def accept(self, request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
        spans = [
            ReceivedSpan(
                trace_id=span.trace_id.hex(),
                span_id=span.span_id.hex(),
                parent_span_id=span.parent_span_id.hex() or None,
                name=span.name,
                start_ns=span.start_time_unix_nano,
                end_ns=span.end_time_unix_nano,
                status_code=span.status.code,
                status_message=span.status.message,
                attributes={a.key: _value(a.value) for a in span.attributes},
                resource={a.key: _value(a.value) for a in resource_spans.resource.attributes},
                links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
            )
            for resource_spans in request.resource_spans
            for scope_spans in resource_spans.scope_spans
            for span in scope_spans.spans
        ]
        with self._lock:
            self.requests += 1
            if self.fail_next > 0:
                self.fail_next -= 1
                return False
            if self.refuse is not None and any(self.refuse(span) for span in spans):
                self.refused += 1
                return False
            self.spans.extend(spans)
            return True

    def snapshot(self) -> list[ReceivedSpan]:
        with self._lock:
            return list(self.spans)


class _TraceService(trace_service_pb2_grpc.TraceServiceServicer):
    def __init__(self, receiver: OtlpReceiver) -> None:
        self.receiver = receiver

    def Export(self, request: Any, context: grpc.ServicerContext) -> Any:
        if not self.receiver.accept(request):
            context.abort(grpc.StatusCode.UNAVAILABLE, "injected failure")
        return trace_service_pb2.ExportTraceServiceResponse()


class GrpcOtlpServer:
    def __init__(self) -> None:
        self.receiver = OtlpReceiver()
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(self.receiver), self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GrpcOtlpServer:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop(grace=None).wait()


class HttpOtlpServer:
    def __init__(self) -> None:
        self.receiver = receiver = OtlpReceiver()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = trace_service_pb2.ExportTraceServiceRequest()
                request.ParseFromString(body)
                ok = self.path == "/v1/traces" and receiver.accept(request)
                payload = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> HttpOtlpServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def main() -> None:
    """A gRPC receiver as a process: prints `ready PORT`, counts spans until standard input
    closes, then prints `spans N`."""
    import os
    import sys

    cpu = int(sys.argv[1]) if len(sys.argv) > 1 else None
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu})

    class Counting(OtlpReceiver):
        count = 0

        def accept(self, request: trace_service_pb2.ExportTraceServiceRequest) -> bool:
            self.count += sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)
            return True

    server = GrpcOtlpServer()
    server.receiver = Counting()
    server._server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(_TraceService(server.receiver), server._server)
    server.port = server._server.add_insecure_port("127.0.0.1:0")
    with server:
        print(f"ready {server.port}", flush=True)
        sys.stdin.read()
    print(f"spans {server.receiver.count}", flush=True)


if __name__ == "__main__":
    main()
