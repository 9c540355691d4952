"""The `sfn-exporter` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence

from exporter import __version__
from exporter.assembler import AssemblerOptions
from exporter.model import ExecutionIdentity, HistoryError
from exporter.translate import PLACEHOLDER_ARN, assemble, json_lines, load_history, render_tree

EXIT_BAD_INPUT = 2


def _translate(args: argparse.Namespace) -> int:
    try:
        if args.file == "-":
            text = sys.stdin.read()
        else:
            with open(args.file, encoding="utf-8") as handle:
                text = handle.read()
    except OSError as exc:
        print(f"sfn-exporter translate: cannot read {args.file}: {exc.strerror}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        events, found_arn = load_history(text)
        arn = args.execution_arn or found_arn
        if arn is None:
            print(
                "sfn-exporter translate: the input names no execution ARN; using a placeholder "
                "(pass --execution-arn for the real trace and span ids)",
                file=sys.stderr,
            )
            arn = PLACEHOLDER_ARN
        identity = ExecutionIdentity.from_arn(arn, trace_header=args.trace_header)
        options = AssemblerOptions(include_data=args.include_data, max_data_bytes=args.max_data_bytes)
        spans = assemble(events, identity, options)
    except (HistoryError, ValueError) as exc:
        print(f"sfn-exporter translate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.otlp_endpoint:
        return _send(spans, identity, args)
    if args.format == "tree":
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        width = args.width or shutil.get_terminal_size((120, 24)).columns
        sys.stdout.write(render_tree(spans, width=width, color=color))
    else:
        sys.stdout.write(json_lines(spans))
    return 0


def _send(spans: list, identity: ExecutionIdentity, args: argparse.Namespace) -> int:  # type: ignore[type-arg]
    from opentelemetry.sdk.trace.export import SpanExportResult

    from exporter.otlp import make_span_exporter, to_readable_spans

    exporter = make_span_exporter(args.otlp_endpoint, args.otlp_protocol, timeout_s=10)
    try:
        finished = [span for span in spans if span.end_ns is not None]
        result = exporter.export(to_readable_spans(finished, identity))
    finally:
        exporter.shutdown()
    if result != SpanExportResult.SUCCESS:
        print(f"sfn-exporter translate: OTLP export to {args.otlp_endpoint} failed", file=sys.stderr)
        return 1
    print(f"sent {len(finished)} spans to {args.otlp_endpoint}", file=sys.stderr)
    return 0


def _demo(args: argparse.Namespace) -> int:
    import time

    from exporter.emulator import REGION, Workload, embedded_step_functions

    with embedded_step_functions() as endpoint:
        workload = Workload(endpoint, interval_s=args.interval)
        workload.deploy()
        print(f"Step Functions emulator on {endpoint}; starting sample executions every {args.interval}s")
        pending: set[str] = set()
        workload.start()
        try:
            deadline = time.monotonic() + args.duration if args.duration else None
            while deadline is None or time.monotonic() < deadline:
                for machine in workload.machines.values():
                    for execution in workload.client.list_executions(stateMachineArn=machine)["executions"]:
                        arn = execution["executionArn"]
                        if execution["status"] == "RUNNING":
                            pending.add(arn)
                        elif arn in pending:
                            pending.discard(arn)
                            events = workload.client.get_execution_history(executionArn=arn)["events"]
                            spans = assemble(events, ExecutionIdentity.from_arn(arn))
                            print(f"\n{arn.replace(f'arn:aws:states:{REGION}:', '')} {execution['status']}")
                            sys.stdout.write(render_tree(spans, width=100, color=sys.stdout.isatty()))
                time.sleep(1)
        except KeyboardInterrupt:
            pass
        finally:
            workload.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sfn-exporter",
        description="Stream AWS Step Functions execution histories as OpenTelemetry traces and Prometheus metrics.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    translate = commands.add_parser(
        "translate",
        help="turn a saved execution history into spans",
        description="Read what `aws stepfunctions get-execution-history` prints (or a JSON list of "
        "such pages) and print one JSON object per span, or draw the trace as a waterfall.",
    )
    translate.add_argument("file", metavar="FILE", help="history JSON file, or - for standard input")
    translate.add_argument("--execution-arn", help="the execution's ARN, when the file does not name it")
    translate.add_argument("--trace-header", help="the execution's X-Ray trace header, to join that trace")
    translate.add_argument(
        "--format", choices=("json", "tree"), default="json", help="output (default: json)"
    )
    translate.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    translate.add_argument("--width", type=int, default=0, help="tree width in columns (default: terminal)")
    translate.add_argument(
        "--include-data", action="store_true", help="copy execution/state input and output"
    )
    translate.add_argument(
        "--max-data-bytes", type=int, default=4096, help="truncate captured data to this size"
    )
    translate.add_argument(
        "--otlp-endpoint", help="send the spans over OTLP to this endpoint instead of printing"
    )
    translate.add_argument(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf"),
        default=os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc",
    )
    translate.set_defaults(handler=_translate)

    demo = commands.add_parser(
        "demo", help="run against an embedded Step Functions emulator with sample workflows"
    )
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between new executions")
    demo.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (default: run until Ctrl-C)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
