"""Writes deploy/grafana/dashboard.json (Grafana's dashboard model), so its panels are code.

python scripts/dashboard.py           # rewrite the file
python scripts/dashboard.py --check   # exit 1 if the file is stale (the tests do this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PATH = Path(__file__).resolve().parent.parent / "deploy" / "grafana" / "dashboard.json"
SM = 'account=~"$account", region=~"$region", state_machine=~"$state_machine"'
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}


def panel(title: str, exprs: list[tuple[str, str]], x: int, y: int, w: int = 12, h: int = 8,
          unit: str = "short", kind: str = "timeseries", instant: bool = False, description: str = "") -> dict[str, Any]:  # fmt: skip
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": h},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
                "instant": instant,
                "range": not instant,
            }
            for i, (expr, legend) in enumerate(exprs)
        ],
    }


def row(title: str, y: int) -> dict[str, Any]:
    return {
        "type": "row",
        "title": title,
        "collapsed": False,
        "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
        "panels": [],
    }


def ratio(status: str) -> str:
    return (
        f'sum by (state_machine) (rate(sfn_executions_finished_total{{status="{status}", {SM}}}[$__rate_interval]))\n'
        f"/\nsum by (state_machine) (rate(sfn_executions_finished_total{{{SM}}}[$__rate_interval]))"
    )


def quantile(q: str, metric: str, by: str, window: str = "$__rate_interval", selector: str = SM) -> str:
    return f"histogram_quantile({q}, sum by ({by}, le) (rate({metric}_bucket{{{selector}}}[{window}])))"


def build() -> dict[str, Any]:
    panels = [
        row("Workflows", 0),
        panel("Executions finished, by status", [(f"sum by (status) (rate(sfn_executions_finished_total{{{SM}}}[$__rate_interval]))", "{{status}}")], 0, 1, unit="ops"),
        panel("Running executions", [(f"sum by (state_machine) (sfn_running_executions{{{SM}}})", "{{state_machine}}")], 12, 1),
        panel("Failure rate", [(ratio("FAILED"), "{{state_machine}}")], 0, 9, unit="percentunit",
              description="Share of finished executions that FAILED (alert: SfnExecutionFailureRateHigh)."),
        panel("Timeout rate", [(ratio("TIMED_OUT"), "{{state_machine}}")], 12, 9, unit="percentunit",
              description="Share of finished executions that TIMED_OUT (alert: SfnExecutionTimeoutRateHigh)."),
        panel("State duration percentiles", [
            (quantile("0.5", "sfn_state_duration_seconds", "state"), "p50 {{state}}"),
            (quantile("0.95", "sfn_state_duration_seconds", "state"), "p95 {{state}}"),
            (quantile("0.99", "sfn_state_duration_seconds", "state"), "p99 {{state}}"),
        ], 0, 17, unit="s"),
        panel("Slowest states (p95 over the range)", [
            (f"topk(10, {quantile('0.95', 'sfn_state_duration_seconds', 'state_machine, state', '$__range')})", "{{state_machine}} {{state}}"),
        ], 12, 17, unit="s", kind="bargauge", instant=True),
        panel("Task failures, by error", [
            (f"sum by (state_machine, state, error) (increase(sfn_task_failures_total{{{SM}}}[$__range]))", "{{state}} {{error}}"),
        ], 0, 25, kind="table", instant=True),
        panel("Retries", [(f"sum by (state_machine, state) (rate(sfn_task_retries_total{{{SM}}}[$__rate_interval]))", "{{state_machine}} {{state}}")], 12, 25, unit="ops"),
        panel("Execution duration percentiles", [
            (quantile("0.5", "sfn_execution_duration_seconds", "state_machine"), "p50 {{state_machine}}"),
            (quantile("0.99", "sfn_execution_duration_seconds", "state_machine"), "p99 {{state_machine}}"),
        ], 0, 33, unit="s"),
        panel("Map iterations, by outcome", [(f"sum by (outcome) (rate(sfn_map_iterations_total{{{SM}}}[$__rate_interval]))", "{{outcome}}")], 12, 33, unit="ops"),
        row("Exporter", 41),
        panel("AWS API calls, by operation and outcome", [("sum by (operation, outcome) (rate(sfn_exporter_api_calls_total[$__rate_interval]))", "{{operation}} {{outcome}}")], 0, 42, unit="reqps"),
        panel("Throttling", [
            ("sum by (operation) (rate(sfn_exporter_api_throttles_total[$__rate_interval]))", "throttled {{operation}}"),
            ("sum by (operation) (sfn_exporter_api_rate_limit)", "allowed rate {{operation}}"),
        ], 12, 42, unit="reqps"),
        panel("Event-to-export lag", [
            (quantile("0.5", "sfn_exporter_event_lag_seconds", "instance", selector=""), "p50 {{instance}}"),
            (quantile("0.99", "sfn_exporter_event_lag_seconds", "instance", selector=""), "p99 {{instance}}"),
            ("max by (instance) (sfn_exporter_poll_staleness_seconds)", "poll staleness {{instance}}"),
        ], 0, 50, unit="s"),
        panel("Tracked executions", [("sum by (instance) (sfn_exporter_tracked_executions)", "{{instance}}")], 12, 50),
        panel("Spans exported and failed", [
            ("sum(rate(sfn_exporter_spans_exported_total[$__rate_interval]))", "exported"),
            ("sum(rate(sfn_exporter_spans_failed_total[$__rate_interval]))", "failed"),
        ], 0, 58, unit="ops"),
        panel("Since the last successful AWS call", [("time() - max by (instance) (sfn_exporter_last_successful_poll_timestamp_seconds)", "{{instance}}")], 12, 58, unit="s",
              description="Alert SfnExporterNoSuccessfulPoll fires above 5 minutes."),
        panel("Log messages read, by outcome", [
            ("sum by (outcome) (rate(sfn_exporter_log_messages_total[$__rate_interval]))", "{{outcome}}"),
            ("sum(rate(sfn_exporter_log_late_messages_total[$__rate_interval]))", "found going back"),
        ], 0, 66, unit="ops",
              description="The log source (EXPRESS workflows): reread is what going back over the overlap costs; invalid and late say what was dropped; found going back growing means logs.settle_seconds is short."),
        panel("Log groups read behind now", [("max by (instance) (sfn_exporter_log_watermark_lag_seconds)", "{{instance}}")], 12, 66, unit="s",
              description="Alert SfnExporterLogSourceBehind fires above 5 minutes."),
        panel("Map run children, by status", [
            ('sum by (state_machine, map_state, status) (sfn_map_run_executions{status!="TOTAL"})', "{{state_machine}} {{map_state}} {{status}}"),
        ], 0, 74, description="Distributed Map runs running now (DescribeMapRun): every child, followed or not."),
        panel("Map run children finished, by status", [
            ("sum by (state_machine, map_state, status) (rate(sfn_map_run_child_executions_finished_total[$__rate_interval]))", "{{state_machine}} {{map_state}} {{status}}"),
        ], 12, 74, unit="ops", description="Alert SfnMapRunChildFailureRateHigh fires above 10% failed or timed out."),
    ]  # fmt: skip
    return {
        "title": "AWS Step Functions (sfn-otel-exporter)",
        "uid": "sfn-otel-exporter",
        "tags": ["aws", "step-functions", "sfn-otel-exporter"],
        "schemaVersion": 39,
        "version": 1,
        "editable": True,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [
                {"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Data source"},
                variable("account", "Account", "label_values(sfn_executions_started_total, account)"),
                variable(
                    "region",
                    "Region",
                    'label_values(sfn_executions_started_total{account=~"$account"}, region)',
                ),
                variable(
                    "state_machine",
                    "State machine",
                    'label_values(sfn_executions_started_total{account=~"$account", region=~"$region"}, state_machine)',
                ),
            ]
        },
        "panels": panels,
    }


def variable(name: str, label: str, query: str) -> dict[str, Any]:
    """A template variable from a label's values, many or all selectable."""
    return {
        "name": name, "type": "query", "datasource": DATASOURCE, "label": label,
        "query": {"query": query, "refId": name}, "definition": query,
        "multi": True, "includeAll": True, "allValue": ".*", "refresh": 2,
    }  # fmt: skip


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if PATH.read_text() != render():
            print(f"{PATH} is stale: run python scripts/dashboard.py", file=sys.stderr)
            sys.exit(1)
    else:
        PATH.write_text(render())
