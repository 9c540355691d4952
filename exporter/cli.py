"""The `sfn-exporter` command line."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from typing import Any

from exporter import __version__
from exporter.config import Config, ConfigError, load_config, parse_value
from exporter.history.assembler import AssemblerOptions
from exporter.history.redact import make_redactor
from exporter.model import ExecutionIdentity, HistoryError, SpanRecord
from exporter.translate import PLACEHOLDER_ARN, assemble, json_lines, load_executions, render_tree

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
        traces = [
            (identity, assemble(events, identity, _options(args)))
            for identity, events in _chosen(load_executions(text), args)
        ]
    except (HistoryError, ValueError) as exc:
        print(f"sfn-exporter translate: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.otlp_endpoint:
        return _send(traces, args)
    if args.format == "tree":
        color = args.color == "always" or (args.color == "auto" and sys.stdout.isatty())
        width = args.width or shutil.get_terminal_size((120, 24)).columns
        for identity, spans in traces:
            if len(traces) > 1:
                sys.stdout.write(f"{identity.execution_arn}\n")
            sys.stdout.write(render_tree(spans, width=width, color=color))
    else:
        sys.stdout.write("".join(json_lines(spans) for _, spans in traces))
    return 0


def _options(args: argparse.Namespace) -> AssemblerOptions:
    return AssemblerOptions(
        include_data=args.include_data, include_causes=not args.no_causes, max_data_bytes=args.max_data_bytes,
        redact=make_redactor(args.redact or []), execution_name=args.execution_name,
        legacy_status=args.legacy_status,
    )  # fmt: skip


def _chosen(
    loaded: tuple[list[tuple[str | None, list[dict[str, Any]]]], bool], args: argparse.Namespace
) -> list[tuple[ExecutionIdentity, list[dict[str, Any]]]]:
    """The executions to translate. Log messages name theirs, and --execution-arn picks one of
    them; a history is one execution, whose ARN comes from --execution-arn, the input, or else
    a placeholder."""
    found, from_logs = loaded
    if from_logs:
        if args.execution_arn:
            found = [(arn, events) for arn, events in found if arn == args.execution_arn]
            if not found:
                raise ValueError(
                    f"--execution-arn {args.execution_arn}: no log message of the input names it"
                )
        return [
            (ExecutionIdentity.from_arn(str(arn), trace_header=args.trace_header), events)
            for arn, events in found
        ]
    arn, events = found[0]
    arn = args.execution_arn or arn
    if arn is None:
        print(
            "sfn-exporter translate: the input names no execution ARN; using a placeholder "
            "(pass --execution-arn for the real trace and span ids)",
            file=sys.stderr,
        )
        arn = PLACEHOLDER_ARN
    return [(ExecutionIdentity.from_arn(arn, trace_header=args.trace_header), events)]


def _send(traces: list[tuple[ExecutionIdentity, list[SpanRecord]]], args: argparse.Namespace) -> int:
    from opentelemetry.sdk.trace.export import SpanExportResult

    from exporter.emit.otlp import make_span_exporter, to_readable_spans

    exporter = make_span_exporter(args.otlp_endpoint, args.otlp_protocol, timeout_s=10)
    sent, result = 0, SpanExportResult.SUCCESS
    try:
        for identity, spans in traces:
            finished = [span for span in spans if span.end_ns is not None]
            result = exporter.export(to_readable_spans(finished, identity))
            if result != SpanExportResult.SUCCESS:
                break
            sent += len(finished)
    finally:
        exporter.shutdown()
    if result != SpanExportResult.SUCCESS:
        print(f"sfn-exporter translate: OTLP export to {args.otlp_endpoint} failed", file=sys.stderr)
        return 1
    print(f"sent {sent} spans to {args.otlp_endpoint}", file=sys.stderr)
    return 0


_FLAG_FIELDS = {
    "web_listen_address": "web.listen_address",
    "web_telemetry_path": "web.telemetry_path",
    "web_config_file": "web.config_file",
    "log_format": "log.format",
    "log_level": "log.level",
    "checkpoint_path": "checkpoint.path",
    "otlp_endpoint": "otlp.endpoint",
    "otlp_protocol": "otlp.protocol",
    "region": "aws.region",
    "shard": "sharding.shard",
    "total_shards": "sharding.total_shards",
}


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {field: getattr(args, flag, None) for flag, field in _FLAG_FIELDS.items()}
    for item in args.set or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected FIELD=VALUE, e.g. polling.page_size=200")
        overrides[key] = parse_value(key.split("."), value)
    return overrides


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, _overrides(args))


def _verify_config(args: argparse.Namespace) -> int:
    import yaml

    from exporter.preflight import preflight

    try:
        config = _load(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    problems = preflight(config)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return EXIT_BAD_INPUT
    sys.stdout.write(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
    print("configuration OK", file=sys.stderr)
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from exporter.app import run_exporter, tune_garbage_collector
    from exporter.checkpoint import CheckpointError
    from exporter.logs import setup_logging
    from exporter.preflight import preflight

    try:
        config = _load(args)
        problems = preflight(config, for_run=True)
        if problems:
            raise ConfigError("\n".join(problems))
        setup_logging(config.log.format, config.log.level)
        tune_garbage_collector()
        return asyncio.run(run_exporter(config))
    except (ConfigError, CheckpointError) as exc:
        print(f"sfn-exporter: refusing to start: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def _demo(args: argparse.Namespace) -> int:
    from exporter.demo.command import run_demo

    try:
        config = _load(args)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_BAD_INPUT
    return run_demo(config, interval_s=args.interval, duration_s=args.duration, color=sys.stdout.isatty())


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="YAML configuration file")
    parser.add_argument(
        "--web.listen-address", dest="web_listen_address", metavar="[HOST]:PORT",
        help="where /metrics, /healthz and /readyz are served (default :9810)",
    )  # fmt: skip
    parser.add_argument(
        "--web.telemetry-path", dest="web_telemetry_path", metavar="PATH", help="default /metrics"
    )
    parser.add_argument(
        "--web.config.file", dest="web_config_file", metavar="FILE",
        help="TLS, client certificates and basic auth for the endpoints (exporter-toolkit format)",
    )  # fmt: skip
    parser.add_argument("--log.format", dest="log_format", choices=("text", "json"))
    parser.add_argument("--log.level", dest="log_level", choices=("debug", "info", "warning", "error"))
    parser.add_argument(
        "--checkpoint.path", dest="checkpoint_path", metavar="FILE", help="SQLite file, or :memory:"
    )
    parser.add_argument("--region", help="AWS region (default: AWS_REGION, AWS_DEFAULT_REGION)")
    parser.add_argument(
        "--shard", type=int, metavar="N",
        help="this process's shard, 0 to M-1 (default: the StatefulSet pod's ordinal when --total-shards is above 1)",
    )  # fmt: skip
    parser.add_argument(
        "--total-shards", dest="total_shards", type=int, metavar="M",
        help="processes sharing the state machines (default 1)",
    )  # fmt: skip
    parser.add_argument(
        "--otlp-endpoint", help="default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    parser.add_argument(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf"),
        help="default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc",
    )
    parser.add_argument(
        "--set", action="append", metavar="FIELD=VALUE",
        help="any configuration field, e.g. --set polling.page_size=200 (repeatable)",
    )  # fmt: skip


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
        "such pages), or Step Functions' CloudWatch Logs messages (what `aws logs filter-log-events` "
        "prints, or a JSON list of messages; any order, many executions, EXPRESS ones too), and print "
        "one JSON object per span, or draw each trace as a waterfall.",
    )
    translate.add_argument("file", metavar="FILE", help="history or log JSON file, or - for standard input")
    translate.add_argument(
        "--execution-arn",
        help="the execution's ARN, when a history does not name it; with logs, the one to show",
    )
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
        "--max-data-bytes", type=int, default=4096, help="truncate captured data and causes to this size"
    )
    translate.add_argument(
        "--no-causes", action="store_true", help="leave error causes out (error names stay)"
    )
    translate.add_argument(
        "--redact", action="append", metavar="JSONPATH",
        help="replace the value at this path in data and causes by [REDACTED] (repeatable), e.g. '$..password'",
    )  # fmt: skip
    translate.add_argument(
        "--legacy-status", action="store_true", help="status OK on success, ERROR on caught failures"
    )
    translate.add_argument(
        "--execution-name", choices=("keep", "hash", "drop"), default="keep",
        help="the execution's name on spans (default: keep)",
    )  # fmt: skip
    translate.add_argument(
        "--otlp-endpoint", help="send the spans over OTLP to this endpoint instead of printing"
    )
    translate.add_argument(
        "--otlp-protocol",
        choices=("grpc", "http/protobuf"),
        default=os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL") or "grpc",
    )
    translate.set_defaults(handler=_translate)

    run = commands.add_parser(
        "run", help="the exporter: watch executions and export traces and metrics until SIGTERM",
        description="Discover state machines and executions, tail their histories and export spans "
        "over OTLP and metrics on /metrics. Configuration: --config FILE, SFN_EXPORTER_* variables "
        "(SFN_EXPORTER_POLLING__PAGE_SIZE=200), flags; the standard AWS and OTEL variables apply.",
    )  # fmt: skip
    _add_config_flags(run)
    run.set_defaults(handler=_run)

    verify = commands.add_parser(
        "verify-config", help="check a configuration and print it with its defaults",
        description="Exit 0 and print the effective configuration, or exit 2 with one line per problem.",
    )  # fmt: skip
    _add_config_flags(verify)
    verify.set_defaults(handler=_verify_config)

    demo = commands.add_parser(
        "demo", help="the exporter against an embedded Step Functions emulator with sample workflows",
        description="Starts moto's Step Functions (with its interpreter) in this process on 127.0.0.1, "
        "deploys sample workflows, keeps starting executions and runs the exporter against it: traces are "
        "drawn here as their executions end, /metrics is served (default 127.0.0.1:9810), and "
        "--otlp-endpoint sends the spans on to a collector.",
    )  # fmt: skip
    _add_config_flags(demo)
    demo.add_argument(
        "--interval", type=float, default=2.0, help="seconds between new executions (default 2)"
    )
    demo.add_argument(
        "--duration", type=float, default=0, help="stop after this many seconds (default: until Ctrl-C)"
    )
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
