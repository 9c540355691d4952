"""The README's main command: the demo runs the real exporter against the embedded emulator."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

from tests.corpus import REPO
from tests.moto_server import free_port
from tests.otlp_receiver import GrpcOtlpServer


def test_demo_draws_traces_serves_metrics_and_sends_otlp() -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_", "SFN_EXPORTER_"))}
    with GrpcOtlpServer() as otlp:
        process = subprocess.Popen(
            [sys.executable, "-m", "exporter", "demo", "--duration", "12", "--interval", "0.5",
             "--web.listen-address", f"127.0.0.1:{port}", "--otlp-endpoint", otlp.endpoint],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO,
        )  # fmt: skip
        metrics = ""
        deadline = time.monotonic() + 11
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as response:
                    metrics = response.read().decode()
            except OSError:
                pass
            time.sleep(0.5)
        out, err = process.communicate(timeout=60)
        received = otlp.receiver.snapshot()
    assert process.returncode == 0, err[-3000:]
    assert "Step Functions emulator: http://127.0.0.1:" in out
    assert out.count("█") > 20
    for finished in ("SUCCEEDED", "FAILED"):
        assert f"  {finished}\n" in out, out[-3000:]
    assert "sfn_executions_started_total{" in metrics and "sfn_exporter_api_calls_total{" in metrics
    roots = [s for s in received if s.parent_span_id is None]
    assert len(roots) >= 3
    # the EXPRESS sample, read from its CloudWatch Logs, is drawn and exported like the others
    assert "express-orders/express-orders-" in out
    assert any(s.name == "express-orders" for s in roots)
    assert "Traceback" not in err
