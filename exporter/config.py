"""Configuration: defaults < YAML file < `SFN_EXPORTER_*` variables < flags, validated into one model.

Errors name the field, as a dotted path: `polling.page_size: Input should be less than or equal
to 1000`. The standard AWS and OpenTelemetry variables keep their usual meaning and are read by
the libraries that own them (botocore, the OTLP exporters); this model holds only overrides."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

ENV_PREFIX = "SFN_EXPORTER_"

# Published quotas (bucket size, refill per second) in the large regions; AWS changes them.
DEFAULT_QUOTAS: dict[str, tuple[float, float]] = {
    "GetExecutionHistory": (400, 20),
    "ListExecutions": (200, 5),
    "DescribeExecution": (300, 15),
    "ListStateMachines": (100, 5),
    "DescribeStateMachine": (200, 20),
    "ListTagsForResource": (100, 5),
    "FilterLogEvents": (5, 5),  # CloudWatch Logs'
    "DescribeMapRun": (100, 1),  # not in AWS's published table: a cautious guess (api.quotas overrides it)
}


class ConfigError(ValueError):
    """A configuration that cannot be used; one line per problem, each naming its field."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# AWS region names: us-east-1, eu-central-2, us-gov-west-1, cn-northwest-1, us-isob-east-1, ...
REGION = re.compile(r"^[a-z]{2,4}(-[a-z]+)+-\d{1,2}$")


def region_problem(value: str) -> str | None:
    """Why `value` is not an AWS region name, or None."""
    if not value.strip():
        return "must not be empty"
    if not REGION.match(value):
        return f"{value!r} is not an AWS region name (like eu-west-1)"
    return None


def endpoint_problem(value: str) -> str | None:
    """Why `value` is not a usable OTLP endpoint URL, or None."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError as exc:
        return f"{value!r} is not a URL: {exc}"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{value!r}: expected http://HOST:PORT or https://HOST:PORT"
    return None


class Quota(_Section):
    bucket: float = Field(gt=0, description="burst size (tokens)")
    refill_per_second: float = Field(gt=0, description="tokens added per second")


def _checked(problem: Callable[[str], str | None]) -> AfterValidator:
    """A field validator from a function that says what is wrong with a value (None: nothing)."""

    def check(value: str | None) -> str | None:
        found = None if value is None else problem(value)
        if found:
            raise ValueError(found)
        return value

    return AfterValidator(check)


RegionName = Annotated[str | None, _checked(region_problem)]
EndpointUrl = Annotated[str | None, _checked(endpoint_problem)]


class AwsSettings(_Section):
    region: RegionName = Field(None, description="default: AWS_REGION, AWS_DEFAULT_REGION")
    endpoint_url: EndpointUrl = Field(None, description="default: AWS_ENDPOINT_URL_SFN, AWS_ENDPOINT_URL")
    logs_endpoint_url: EndpointUrl = Field(
        None,
        description="CloudWatch Logs endpoint (default: AWS_ENDPOINT_URL_CLOUDWATCH_LOGS, AWS_ENDPOINT_URL)",
    )
    sts_endpoint_url: EndpointUrl = Field(
        None,
        description="STS endpoint, for AssumeRole and GetCallerIdentity (default: AWS_ENDPOINT_URL_STS, AWS_ENDPOINT_URL)",
    )
    connect_timeout_seconds: float = Field(5, gt=0, description="TCP connect timeout of an API call")
    read_timeout_seconds: float = Field(20, gt=0, description="read timeout of an API call")


class StateMachineFilter(_Section):
    name_pattern: str | None = Field(None, description="regular expression the name must contain a match of")
    exclude_pattern: str | None = Field(None, description="regular expression excluding names")
    arns: list[str] = Field(default_factory=list, description="only these state machines, if set")
    tags: dict[str, str] = Field(default_factory=dict, description="tags that must all match")

    @field_validator("name_pattern", "exclude_pattern")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("arns")
    @classmethod
    def _are_state_machine_arns(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if not re.match(r"^arn:[\w-]+:states:[\w-]+:\d+:stateMachine:[^:]+$", value):
                raise ValueError(f"item {index}: {value!r} is not a state machine ARN")
        return values

    def accepts(self, arn: str, name: str) -> bool:
        """Whether a state machine passes the name and ARN filters (tags are checked apart)."""
        if self.arns and arn not in self.arns:
            return False
        if self.name_pattern and not re.search(self.name_pattern, name):
            return False
        return not (self.exclude_pattern and re.search(self.exclude_pattern, name))


ROLE_ARN = re.compile(r"^arn:aws[\w-]*:iam::(?P<account>\d{12}):role/[\w+=,.@/-]+$")


class Target(_Section):
    """An account, reached through a role or with the ambient credentials, and its regions."""

    role_arn: str | None = Field(
        None, description="IAM role to assume (sts:AssumeRole); none: the ambient credentials' account"
    )
    external_id: str | None = Field(
        None, min_length=2, max_length=1224, description="ExternalId of the AssumeRole call"
    )
    session_name: str = Field(
        "sfn-exporter", pattern=r"^[\w+=,.@-]{2,64}$", description="RoleSessionName of the AssumeRole call"
    )
    duration_seconds: int = Field(
        3600, ge=900, le=43200, description="lifetime of the role's credentials (renewed before they expire)"
    )
    regions: list[str] = Field(
        default_factory=list,
        description="regions to watch (default: aws.region, AWS_REGION, AWS_DEFAULT_REGION)",
    )
    state_machines: StateMachineFilter | None = Field(
        None, description="this target's state machine filter (default: the top-level state_machines)"
    )

    @field_validator("role_arn")
    @classmethod
    def _is_role_arn(cls, value: str | None) -> str | None:
        if value is not None and not ROLE_ARN.match(value):
            raise ValueError(f"{value!r} is not an IAM role ARN (arn:aws:iam::ACCOUNT:role/NAME)")
        return value

    @field_validator("regions")
    @classmethod
    def _are_regions(cls, values: list[str]) -> list[str]:
        for index, value in enumerate(values):
            if problem := region_problem(value):
                raise ValueError(f"item {index}: {problem}")
        if len(set(values)) != len(values):
            raise ValueError("a region is listed twice")
        return values

    @model_validator(mode="after")
    def _external_id_needs_role(self) -> Target:
        if self.external_id is not None and self.role_arn is None:
            raise ValueError("external_id is only used with role_arn")
        return self

    @property
    def account(self) -> str | None:
        """The role's account (None for the ambient credentials: asked of STS at start)."""
        match = ROLE_ARN.match(self.role_arn) if self.role_arn else None
        return match["account"] if match else None


class ShardingSettings(_Section):
    shard: int | None = Field(
        None,
        ge=0,
        description="this process's shard, 0 to total_shards-1 (default: the StatefulSet pod's ordinal, from POD_NAME or the host name)",
    )
    total_shards: int = Field(1, ge=1, le=1000, description="how many processes share the state machines")
    quota_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of each quota one shard may use (default: api.quota_share / total_shards)",
    )

    @model_validator(mode="after")
    def _in_range(self) -> ShardingSettings:
        if self.shard is not None and self.shard >= self.total_shards:
            raise ValueError(f"shard {self.shard} is not below total_shards {self.total_shards}")
        return self

    def resolve(self, environ: Mapping[str, str], hostname: str) -> int:
        """This process's shard: `shard`, else the StatefulSet ordinal that ends POD_NAME (or
        the host name, which a StatefulSet pod's is); ConfigError when neither gives one."""
        from exporter.shards import ordinal

        if self.shard is not None or self.total_shards == 1:
            return self.shard or 0
        name = environ.get("POD_NAME") or hostname
        found = ordinal(name)
        if found is None:
            raise ConfigError(
                f"sharding.shard: not set, and {name!r} (POD_NAME or the host name) does not end in a "
                "StatefulSet ordinal like -0; set --shard"
            )
        if found >= self.total_shards:
            raise ConfigError(
                f"sharding.shard: the pod ordinal {found} of {name!r} is not below total_shards {self.total_shards}"
            )
        return found


class DiscoverySettings(_Section):
    state_machines_interval_seconds: float = Field(
        300, gt=0, description="how often state machines are listed again"
    )
    executions_interval_seconds: float = Field(
        10, gt=0, description="how often each state machine's executions are listed"
    )
    running_scan_every: int = Field(6, ge=1, description="list RUNNING executions every Nth pass")
    lookback_seconds: float = Field(
        300, ge=0, description="on a first start, also export executions that ended this recently"
    )
    overlap_seconds: float = Field(60, ge=0, description="how far each pass re-lists behind the previous one")


class PollingSettings(_Section):
    min_interval_seconds: float = Field(1, gt=0, description="next poll of an execution that had new events")
    max_interval_seconds: float = Field(
        30, gt=0, description="longest an idle execution goes unpolled, while the budget can afford it"
    )
    page_size: int = Field(
        100,
        ge=1,
        le=1000,
        description="largest maxResults of a poll's first history page (it adapts to what polls find)",
    )
    concurrency: int = Field(8, ge=1, le=256, description="polls under way at once")

    @model_validator(mode="after")
    def _ordered(self) -> PollingSettings:
        if self.max_interval_seconds < self.min_interval_seconds:
            raise ValueError("max_interval_seconds must not be below min_interval_seconds")
        return self


Source = Literal["history", "logs", "auto"]


class LogsSettings(_Section):
    source: Source = Field(
        "auto",
        description="where executions are read: history (GetExecutionHistory), logs (CloudWatch Logs), auto (logs for EXPRESS, history for STANDARD)",
    )
    sources: dict[str, Source] = Field(
        default_factory=dict, description="the choice for some state machines, by name or ARN"
    )
    interval_seconds: float = Field(2, gt=0, le=300, description="how often each log group is read")
    settle_seconds: float = Field(
        2,
        ge=0,
        le=300,
        description="each read stops this far behind now, giving CloudWatch Logs time to deliver (read once, in order)",
    )
    overlap_seconds: float = Field(
        10,
        ge=0,
        le=3600,
        description="how far each read goes back behind the previous one for later deliveries, on calls the quota has to spare",
    )
    reorder_window_seconds: float = Field(
        10,
        ge=0,
        le=600,
        description="how long an execution's events wait for a missing one before going on without it",
    )
    express_max_seconds: float = Field(
        330,
        gt=0,
        description="an EXPRESS execution with no end after this long is closed as incomplete (5 minutes at most, plus a margin)",
    )
    quota_share: float | None = Field(
        None,
        gt=0,
        le=1,
        description="share of the FilterLogEvents quota this exporter may use (default: api.quota_share)",
    )

    def source_for(self, arn: str, name: str) -> str:
        return self.sources.get(arn) or self.sources.get(name) or self.source


class MapRunsSettings(_Section):
    follow: Literal["all", "failed", "sample"] = Field(
        "sample",
        description="which Distributed Map children are read: all, failed (those that failed, timed out or were aborted), sample (the first sample_size and every failure)",
    )
    sample_size: int = Field(
        10,
        ge=0,
        le=10000,
        description="children followed per map run under follow: sample (failures come on top)",
    )
    trace: Literal["nested", "linked"] = Field(
        "linked",
        description="a child's trace: linked (its own, linked to the map run span) or nested (under the map run span in its parent's trace)",
    )
    interval_seconds: float = Field(
        5, gt=0, le=300, description="how often each running map run is described and its children listed"
    )


class ApiSettings(_Section):
    quota_share: float = Field(0.5, gt=0, le=1, description="share of each quota this exporter may use")
    quotas: dict[str, Quota] = Field(
        default_factory=dict, description="overrides of the published quotas, by operation"
    )

    @field_validator("quotas")
    @classmethod
    def _known_operations(cls, value: dict[str, Quota]) -> dict[str, Quota]:
        for name in value:
            if name not in DEFAULT_QUOTAS:
                raise ValueError(f"unknown operation {name!r}; known: {', '.join(sorted(DEFAULT_QUOTAS))}")
        return value

    def quota(self, operation: str, share: float | None = None) -> Quota:
        """The quota this exporter may spend on `operation` (its share of the account's, or
        `share` of it)."""
        bucket, refill = DEFAULT_QUOTAS[operation]
        override = self.quotas.get(operation)
        if override is not None:
            bucket, refill = override.bucket, override.refill_per_second
        share = self.quota_share if share is None else share
        return Quota(bucket=max(1.0, bucket * share), refill_per_second=refill * share)


class DataSettings(_Section):
    include_execution_data: bool = Field(
        False, description="copy execution and state inputs, outputs and task parameters onto spans"
    )
    include_causes: bool = Field(
        True, description="keep error causes (redacted and cut like data); error names are always kept"
    )
    execution_name: Literal["keep", "hash", "drop"] = Field(
        "keep",
        description="the execution's name on spans: keep, hash (sha256) or drop (names often hold business ids)",
    )
    max_bytes: int = Field(
        4096, ge=0, le=262144, description="cut each captured input, output or cause to this many bytes"
    )
    redact_paths: list[str] = Field(default_factory=list, description='JSON paths replaced by "[REDACTED]"')

    @field_validator("redact_paths")
    @classmethod
    def _paths_parse(cls, values: list[str]) -> list[str]:
        from exporter.history.redact import parse_path

        for index, value in enumerate(values):
            try:
                parse_path(value)
            except ValueError as exc:
                raise ValueError(f"item {index}: {exc}") from None
        return values


class CheckpointSettings(_Section):
    path: str = Field(
        "sfn-exporter.sqlite",
        min_length=1,
        description="SQLite file; ':memory:' keeps nothing across restarts",
    )
    retention_hours: float = Field(24, gt=0, description="how long finished executions are remembered")


class OtlpSettings(_Section):
    enabled: bool = Field(
        True, description="false: metrics only (default: true unless OTEL_SDK_DISABLED=true)"
    )
    endpoint: EndpointUrl = Field(
        None, description="default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    protocol: Literal["grpc", "http/protobuf"] | None = Field(
        None, description="default: OTEL_EXPORTER_OTLP_PROTOCOL, else grpc"
    )
    timeout_seconds: float | None = Field(
        None,
        gt=0,
        description="per export request, retries included (default: OTEL_EXPORTER_OTLP_TRACES_TIMEOUT, OTEL_EXPORTER_OTLP_TIMEOUT, else 10)",
    )
    batch_max_spans: int = Field(512, ge=1, description="spans per export request at most")
    batch_linger_seconds: float = Field(
        0.2, ge=0, le=60, description="how long spans wait for others to share a request"
    )
    legacy_status: bool = Field(
        False,
        description="status OK on success and ERROR on a caught failure (default: UNSET on both, as OpenTelemetry asks)",
    )

    def exporting(self, environ: Mapping[str, str]) -> bool:
        """Whether spans are exported: `enabled` when set, else not when OTEL_SDK_DISABLED is true."""
        if "enabled" in self.model_fields_set:
            return self.enabled
        return environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"


class WebSettings(_Section):
    listen_address: str = Field(":9810", description="host:port for /metrics, /healthz and /readyz")
    telemetry_path: str = Field("/metrics", description="path of the Prometheus exposition")
    config_file: str | None = Field(
        None,
        description="web configuration file (Prometheus exporter-toolkit format): TLS, client certificates, basic auth",
    )

    @field_validator("listen_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        port = value.rpartition(":")[2]
        if not port.isdigit() or not 0 <= int(port) <= 65535:
            raise ValueError(f"{value!r}: expected [HOST]:PORT with PORT from 0 to 65535")
        return value

    @field_validator("telemetry_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with /")
        if value.rstrip("/") in ("/healthz", "/readyz") or value == "/":
            raise ValueError(f"{value!r} is taken by the exporter's own endpoints (/, /healthz, /readyz)")
        return value

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen_address.rpartition(":")
        return host.strip("[]") or "0.0.0.0", int(port)


class ShutdownSettings(_Section):
    grace_period_seconds: float = Field(20, gt=0, description="keep below terminationGracePeriodSeconds")


class LogSettings(_Section):
    format: Literal["text", "json"] = Field("text", description="text or json (one object a line)")
    level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="debug, info, warning or error"
    )


class Config(_Section):
    aws: AwsSettings = AwsSettings()
    targets: list[Target] = Field(
        default_factory=list,
        description="accounts and regions to watch (none: one, the ambient credentials' in aws.region)",
    )
    sharding: ShardingSettings = ShardingSettings()
    state_machines: StateMachineFilter = StateMachineFilter()
    discovery: DiscoverySettings = DiscoverySettings()
    polling: PollingSettings = PollingSettings()
    api: ApiSettings = ApiSettings()
    data: DataSettings = DataSettings()
    logs: LogsSettings = LogsSettings()
    map_runs: MapRunsSettings = MapRunsSettings()
    checkpoint: CheckpointSettings = CheckpointSettings()
    otlp: OtlpSettings = OtlpSettings()
    web: WebSettings = WebSettings()
    shutdown: ShutdownSettings = ShutdownSettings()
    log: LogSettings = LogSettings()

    def quota(self, operation: str) -> Quota:
        """The quota this exporter may spend on `operation`: `api.quota_share` of the account's,
        or for CloudWatch Logs `logs.quota_share` when set."""
        share = self.logs.quota_share if operation == "FilterLogEvents" else None
        if self.sharding.total_shards > 1:
            base = self.api.quota_share if share is None else share
            share = self.sharding.quota_share or base / self.sharding.total_shards
        return self.api.quota(operation, share)

    @model_validator(mode="after")
    def _targets_distinct(self) -> Config:
        seen: set[tuple[str | None, str]] = set()
        for index, target in enumerate(self.targets):
            for region in target.regions or [""]:
                if (target.role_arn, region) in seen:
                    where = f"region {region}" if region else "the default region"
                    raise ValueError(
                        f"targets.{index}: {target.role_arn or 'the ambient account'} in {where} is listed twice"
                    )
                seen.add((target.role_arn, region))
        return self


def _format_errors(error: ValidationError, origin: str) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(part) for part in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{origin}{where}: {message}")
    return "\n".join(lines)


def _set_path(target: dict[str, Any], path: list[str], value: Any) -> None:
    for key in path[:-1]:
        nested = target.setdefault(key, {})
        if not isinstance(nested, dict):
            raise ConfigError(f"{'.'.join(path)}: {key} is not a section")
        target = nested
    target[path[-1]] = value


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _wants_text(path: list[str]) -> bool:
    """Whether the field at `path` is a string (or an optional one)."""
    model: Any = Config
    for key in path:
        fields = getattr(model, "model_fields", None)
        if not fields or key not in fields:
            return False
        model = fields[key].annotation
    return model in (str, str | None)


def parse_value(path: list[str], raw: str) -> Any:
    """A flag or variable's text as the field wants it: taken as given for a string field (so
    `:memory:` stays a path), read as YAML where the field wants a number, boolean or structure."""
    if not raw or _wants_text(path):
        return raw
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """`SFN_EXPORTER_POLLING__PAGE_SIZE=200` -> {"polling": {"page_size": 200}}; see `parse_value`."""
    data: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = name.removeprefix(ENV_PREFIX).lower().split("__")
        _set_path(data, path, parse_value(path, raw))
    return data


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Build the configuration from a YAML file, the environment and flag overrides.

    `overrides` maps dotted field paths (`"web.listen_address"`) to values from flags."""
    data: dict[str, Any] = {}
    origin = ""
    if path is not None:
        origin = f"{path}: "
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(loaded).__name__}")
        data = loaded or {}
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(data, dotted.split("."), value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, origin)) from None


def reference() -> list[tuple[str, str, str]]:
    """(dotted field, default, description) for every field: the README's configuration table."""
    rows: list[tuple[str, str, str]] = []
    for field_name, section_field in Config.model_fields.items():
        section = section_field.annotation
        section_name = field_name
        if field_name == "targets":
            section, section_name = Target, "targets[]"
        assert isinstance(section, type) and issubclass(section, BaseModel)
        for name, info in section.model_fields.items():
            default = info.get_default(call_default_factory=True)
            shown = "none" if default is None else yaml.safe_dump(default, default_flow_style=True).strip()
            shown = shown.removesuffix("\n...").strip()
            rows.append((f"{section_name}.{name}", shown, info.description or ""))
    return rows
