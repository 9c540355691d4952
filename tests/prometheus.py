"""A real Prometheus server (Debian's `prometheus`) on 127.0.0.1 for tests: scrapes the given
targets every half second; queried over its HTTP API. Stopped by the test that started it."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from tests.moto_server import free_port, stop_process


def prometheus_binary(name: str = "prometheus") -> str:
    found = shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed: ./dev test installs Debian's prometheus package")
    return found


class PrometheusServer:
    def __init__(self, workdir: Path, targets: list[str], rule_files: list[Path] | None = None,
                 scrape_interval: str = "500ms", evaluation_interval: str = "500ms") -> None:  # fmt: skip
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        config = {
            "global": {"scrape_interval": scrape_interval, "evaluation_interval": evaluation_interval,
                       "scrape_timeout": "400ms" if scrape_interval == "500ms" else "10s"},
            "scrape_configs": [{"job_name": "sfn-exporter", "static_configs": [{"targets": targets}]}],
        }  # fmt: skip
        if rule_files:
            config["rule_files"] = [str(path) for path in rule_files]
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> PrometheusServer:
        self._log = (self.workdir / "prometheus.log").open("wb")
        self._process = subprocess.Popen(
            [
                prometheus_binary(), f"--config.file={self.workdir / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.workdir / 'data'}", f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                pass
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(
                    f"prometheus did not start: {(self.workdir / 'prometheus.log').read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def __exit__(self, *exc: object) -> None:
        if self._process is not None:
            stop_process(self._process)
            self._process = None
        self._log.close()

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = json.loads(exc.read())
        if body.get("status") != "success":
            raise RuntimeError(f"{path} {params}: {body.get('errorType')}: {body.get('error')}")
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        return list(self.api("query", query=promql)["result"])

    def vector(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        return {tuple(item["metric"].get(label, "") for label in labels): float(item["value"][1])
                for item in self.query(promql)}  # fmt: skip

    def scraped_after(self, moment: float) -> bool:
        """True once every target's last scrape began after `moment` (Unix time)."""
        import datetime as dt

        targets = self.api("targets")["activeTargets"]
        if not targets:
            return False
        for target in targets:
            last = target.get("lastScrape", "")
            if target.get("health") != "up" or not last or last.startswith("0001"):
                return False
            match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", last)
            if match is None:
                return False
            fraction = float(match.group(2) or 0)
            when = dt.datetime.fromisoformat(match.group(1) + "+00:00").timestamp() + fraction
            if when < moment:
                return False
        return True
