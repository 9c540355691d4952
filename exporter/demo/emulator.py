"""An embedded Step Functions emulator for the demo: moto's server, in this process, on loopback,
with its state-machine interpreter on, the sample workflows deployed and executions started."""

from __future__ import annotations

import json
import logging
import random
import threading
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from exporter.demo.samples import ROLE_ARN, SAMPLES

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

    def start_one(self, name: str | None = None) -> str:
        sample = next(s for s in SAMPLES if s.name == name) if name else self._random.choice(SAMPLES)
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
