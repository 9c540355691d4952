"""An embedded Step Functions emulator for the demo: moto's server, in this process, on loopback,
with its state-machine interpreter on, the sample workflows deployed and executions started."""

from __future__ import annotations

import datetime
import json
import logging
import random
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from exporter.demo.samples import EXPRESS_SAMPLES, LOG_GROUP, ROLE_ARN, SAMPLES

log = logging.getLogger(__name__)

REGION = "us-east-1"
CREDENTIALS = {"aws_access_key_id": "demo", "aws_secret_access_key": "demo"}


@contextmanager
def embedded_step_functions() -> Iterator[str]:
    """moto's Step Functions on 127.0.0.1 (a free port); yields its endpoint URL."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:  # pragma: no cover - depends on the install
        raise SystemExit(
            "the demo needs moto: pip install 'sfn-otel-exporter[demo]' (./dev demo does this)"
        ) from None
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    # The interpreter logs every failing state as an error; in the demo, failing is the point.
    logging.getLogger("moto.stepfunctions.parser").setLevel(logging.CRITICAL)
    patch_moto_history_paging()
    patch_moto_logging()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    request = urllib.request.Request(
        f"{endpoint}/moto-api/config",
        data=json.dumps({"stepfunctions": {"execute_state_machine": True}}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        response.read()
    try:
        yield endpoint
    finally:
        server.stop()


class Workload:
    """Deploys the sample workflows and starts executions of them, at random, until stopped."""

    def __init__(self, endpoint: str, interval_s: float = 2.0, seed: int | None = None) -> None:
        import boto3

        self.client: Any = boto3.client(
            "stepfunctions", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS
        )
        self.logs: Any = boto3.client("logs", endpoint_url=endpoint, region_name=REGION, **CREDENTIALS)
        self.interval_s = interval_s
        self._random = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="demo-workload", daemon=True)
        self.machines: dict[str, str] = {}
        self.started = 0

    def deploy(self) -> None:
        for sample in SAMPLES:
            arn = self.client.create_state_machine(
                name=sample.name, definition=sample.definition_json, roleArn=ROLE_ARN
            )["stateMachineArn"]
            self.machines[sample.name] = arn
        self.logs.create_log_group(logGroupName=LOG_GROUP)
        group_arn = f"arn:aws:logs:{REGION}:123456789012:log-group:{LOG_GROUP}:*"
        logging_ = {"level": "ALL", "includeExecutionData": False,
                    "destinations": [{"cloudWatchLogsLogGroup": {"logGroupArn": group_arn}}]}  # fmt: skip
        for sample in EXPRESS_SAMPLES:
            arn = self.client.create_state_machine(
                name=sample.name, definition=sample.definition_json, roleArn=ROLE_ARN, type="EXPRESS",
                loggingConfiguration=logging_,
            )["stateMachineArn"]  # fmt: skip
            self.machines[sample.name] = arn

    def start_one(self, name: str | None = None) -> str:
        every = SAMPLES + EXPRESS_SAMPLES
        if name:
            sample = next(s for s in every if s.name == name)
        elif self.started < len(every):  # each sample once first, so that the demo shows all
            sample = every[self.started]
        else:
            sample = self._random.choice(every)
        self.started += 1
        execution_name = f"{sample.name}-{self.started:05d}-{self._random.getrandbits(32):08x}"
        return str(
            self.client.start_execution(
                stateMachineArn=self.machines[sample.name],
                name=execution_name,
                input=json.dumps(sample.input),
            )["executionArn"]
        )

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.start_one()
            except Exception:  # the demo goes on; the next start may work
                log.exception("could not start a demo execution")

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


_DATA_KEYS = ("input", "inputDetails", "output", "outputDetails")


def _page_token(arn: str, reverse: bool, offset: int) -> str:
    import base64

    return base64.urlsafe_b64encode(json.dumps([arn, reverse, offset]).encode()).decode()


def _page_offset(token: str, arn: str, reverse: bool) -> int:
    import base64

    try:
        token_arn, token_reverse, offset = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError:
        token_arn, token_reverse, offset = None, None, None
    if token_arn != arn or token_reverse != reverse or not isinstance(offset, int) or offset < 0:
        from moto.stepfunctions.exceptions import InvalidToken

        raise InvalidToken(f"{token[:20]}")
    return int(offset)


def aws_history_page(
    events: list[dict[str, Any]], arn: str, reverse: bool, max_results: int | None, token: str | None,
    include_data: bool,
) -> dict[str, Any]:  # fmt: skip
    """One GetExecutionHistory page with AWS's semantics: newest first on `reverse`,
    `maxResults` 1..1000 (default 100), `nextToken` only while more remain, data left out on request."""
    from moto.core.exceptions import JsonRESTError

    size = 100 if max_results is None else max_results
    if not 1 <= size <= 1000:
        raise JsonRESTError("ValidationException", f"maxResults: {size} is not between 1 and 1000")
    ordered = sorted(events, key=lambda e: e["id"], reverse=reverse)
    offset = _page_offset(token, arn, reverse) if token else 0
    page = ordered[offset : offset + size]
    if not include_data:
        page = [
            {k: ({dk: dv for dk, dv in v.items() if dk not in _DATA_KEYS} if k.endswith("EventDetails") else v)
             for k, v in event.items()}
            for event in page
        ]  # fmt: skip
    result: dict[str, Any] = {"events": page}
    if offset + size < len(ordered):
        result["nextToken"] = _page_token(arn, reverse, offset + size)
    return result


def patch_moto_history_paging() -> None:
    """Make moto's GetExecutionHistory honour `reverseOrder`, `maxResults`, `nextToken` and
    `includeExecutionData` as AWS does (moto ignores them); the exporter relies on all four."""
    from moto.core.responses import ActionResult
    from moto.stepfunctions.responses import StepFunctionResponse

    if getattr(StepFunctionResponse, "_aws_paging", False):
        return

    def get_execution_history(self: Any) -> ActionResult:
        arn = self._get_param("executionArn")
        history = self.stepfunction_backend.get_execution_history(arn)
        include = self._get_param("includeExecutionData")
        page = aws_history_page(
            list(history["events"]), arn, bool(self._get_param("reverseOrder")), self._get_int_param("maxResults"),
            self._get_param("nextToken"), include is None or bool(include),
        )  # fmt: skip
        return ActionResult(page)

    StepFunctionResponse.get_execution_history = get_execution_history  # type: ignore[method-assign]
    StepFunctionResponse._aws_paging = True  # type: ignore[attr-defined]


def patch_moto_logging() -> None:
    """Make moto's interpreter write the CloudWatch Logs messages of state machines that have a
    `loggingConfiguration`, shaped as AWS's (numbers as text, epoch milliseconds), to moto's own
    log groups: moto never opens the logging session, and its writer does not fit its logs
    backend. The demo's EXPRESS workflow is read from these messages."""
    from moto.logs.models import logs_backends
    from moto.stepfunctions.parser.asl.eval.event.logging import (
        CloudWatchLoggingConfiguration,
        CloudWatchLoggingSession,
    )
    from moto.stepfunctions.parser.backend.execution import Execution

    if getattr(Execution, "_logging_patched", False):
        return
    original_init = Execution.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        settings: Any = getattr(self.state_machine, "loggingConfiguration", None) or {}
        if self._cloud_watch_logging_session is None and settings.get("level", "OFF") != "OFF":
            configuration = CloudWatchLoggingConfiguration.from_logging_configuration(
                self.state_machine.arn, settings
            )
            if configuration is not None:
                self._cloud_watch_logging_session = CloudWatchLoggingSession(self.exec_arn, configuration)

    def publish(self: Any, history_log: Any) -> None:
        when = history_log["event_timestamp"]
        if isinstance(when, str):
            when = datetime.datetime.fromisoformat(when)
        stamp = int(when.timestamp() * 1000)
        message = {**history_log, "event_timestamp": str(stamp), "redrive_count": "0"}
        config = self.configuration
        group = logs_backends[config.log_account_id][config.log_region].groups.get(config.log_group_name)
        if group is None:
            return  # no such log group: AWS would not deliver either
        if config.log_stream_name not in group.streams:
            group.create_log_stream(config.log_stream_name)
        group.put_log_events(
            config.log_stream_name, [{"timestamp": stamp, "message": json.dumps(message, default=str)}]
        )

    Execution.__init__ = init  # type: ignore[method-assign]
    CloudWatchLoggingSession.publish_history_log = publish  # type: ignore[method-assign]
    Execution._logging_patched = True  # type: ignore[attr-defined]
