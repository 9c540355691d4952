"""The shipped alert rules in a real Prometheus server, scraping the real exporter, which
watches moto running workflows that fail and time out."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from tests.corpus import REPO
from tests.harness import ExporterProcess, Workload, fast_config, wait_until
from tests.moto_server import MotoServer
from tests.prometheus import PrometheusServer


def test_failure_and_timeout_alerts_go_pending_for_the_failing_workflows_only(tmp_path: Path) -> None:
    with MotoServer() as moto:
        workload = Workload(moto.endpoint)
        workload.deploy(["always-fails", "times-out", "parallel-fanout"])
        exporter = ExporterProcess(
            tmp_path, fast_config(tmp_path, otlp={"enabled": False}), moto.endpoint, None
        ).start()
        rules = REPO / "deploy" / "prometheus" / "alerts.yml"
        try:
            with PrometheusServer(
                tmp_path / "prometheus", [exporter.listen], rule_files=[rules]
            ) as prometheus:
                started = time.time()
                wait_until(lambda: prometheus.scraped_after(started), 30, "a first scrape")
                # The first sample of each series is not an increase: what finished before the
                # exporter first exported it (a discovery pass finds several at once, more on a
                # busy machine) does not count. Enough volume after it for the rules' 20.
                for round_ in range(40):
                    workload.start("always-fails")
                    if round_ < 38:
                        workload.start("times-out")
                    if round_ % 4 == 0:
                        workload.start("parallel-fanout")
                    time.sleep(0.15)

                def alerts() -> dict[tuple[str, str], str]:
                    return {
                        (item["metric"]["alertname"], item["metric"].get("state_machine", "")): item[
                            "metric"
                        ]["alertstate"]
                        for item in prometheus.query("ALERTS")
                    }

                wait_until(
                    lambda: {("SfnExecutionFailureRateHigh", "always-fails"), ("SfnExecutionTimeoutRateHigh", "times-out")}
                    <= set(alerts()),
                    60, "the failure and timeout alerts",
                )  # fmt: skip
                active = alerts()
                assert active[("SfnExecutionFailureRateHigh", "always-fails")] in ("pending", "firing")
                assert active[("SfnExecutionTimeoutRateHigh", "times-out")] in ("pending", "firing")
                # nothing for the healthy workflow, nor about the exporter itself
                assert not [key for key in active if key[1] == "parallel-fanout"]
                assert not [key for key in active if key[0].startswith("SfnExporter")]
        finally:
            exporter.signal(signal.SIGTERM)
            assert exporter.wait(30) == 0
