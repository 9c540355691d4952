"""What `run` needs from its surroundings, checked before it starts work: the region, the
OpenTelemetry variables, the listen address and the checkpoint. `verify-config` runs the same
checks, so the two never disagree; each problem is one line naming the field or variable."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Mapping
from pathlib import Path

from exporter.checkpoint import CheckpointError, CursorStore
from exporter.config import Config, ConfigError, endpoint_problem, region_problem
from exporter.emit.webconfig import WebConfigError, load_web_config

OTLP_PROTOCOLS = ("grpc", "http/protobuf")


def effective_region(config: Config, environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The region the exporter will use, and where it was set (for error messages)."""
    if config.aws.region:
        return config.aws.region, "aws.region"
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if environ.get(name):
            return environ[name], name
    from botocore.session import get_session

    region = get_session().get_config_variable("region")  # the AWS profile's region
    return (str(region) if region else None), "the AWS profile's region"


def _first(environ: Mapping[str, str], *names: str) -> tuple[str | None, str]:
    for name in names:
        if environ.get(name):
            return environ[name], name
    return None, names[-1]


def _otlp(config: Config, environ: Mapping[str, str]) -> list[str]:
    if not config.otlp.exporting(environ):
        return []
    problems = []
    protocol: str | None = config.otlp.protocol
    where = "otlp.protocol"
    if protocol is None:
        protocol, where = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL")
    if protocol is not None and protocol not in OTLP_PROTOCOLS:
        problems.append(f"{where}: {protocol!r} is not supported; use grpc or http/protobuf")
    if config.otlp.endpoint is None:
        endpoint, name = _first(environ, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
        problem = endpoint_problem(endpoint) if endpoint else None
        if problem:
            problems.append(f"{name}: {problem}")
    return problems


def _listen(config: Config, bind: bool) -> list[str]:
    host, port = config.web.host_port
    where = f"web.listen_address: {config.web.listen_address!r}"
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (OSError, UnicodeError) as exc:
        return [f"{where}: cannot resolve {host!r}: {getattr(exc, 'strerror', None) or exc}"]
    if not bind or port == 0:
        return []
    family, kind, proto, _, address = addresses[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            return [f"{where}: cannot listen: {exc.strerror or exc}"]
    return []


def _checkpoint(path: str) -> list[str]:
    """Open an existing checkpoint as `run` would; for a new one, prove its folder takes a file."""
    if path == ":memory:" or Path(path).exists():
        try:
            CursorStore(path).close()
        except CheckpointError as exc:
            return [str(exc)]
        return []
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".sfn-exporter-probe-"):
            pass
    except OSError as exc:
        return [f"checkpoint.path {path!r}: cannot be used: {exc.strerror or exc}"]
    return []


def preflight(
    config: Config, environ: Mapping[str, str] | None = None, *, for_run: bool = False
) -> list[str]:
    """Every problem that would stop `run`, one line each (empty: it can start). `verify-config`
    also binds the listen address and opens the checkpoint; `run` does both for real instead,
    and reports their failures the same way."""
    environ = os.environ if environ is None else environ
    problems = []
    region, where = effective_region(config, environ)
    needs_default = not config.targets or any(not target.regions for target in config.targets)
    if region is None and needs_default:
        problems.append("aws.region: no AWS region: set AWS_REGION, or aws.region in the config")
    elif region is not None and (problem := region_problem(region)):
        problems.append(f"{where}: {problem}")
    try:
        config.sharding.resolve(environ, socket.gethostname())
    except ConfigError as exc:
        problems.append(str(exc))
    problems += _otlp(config, environ)
    problems += _listen(config, bind=not for_run)
    if config.web.config_file:
        try:
            load_web_config(config.web.config_file)
        except WebConfigError as exc:
            problems.append(str(exc))
    if not for_run:
        problems += _checkpoint(config.checkpoint.path)
    return problems
