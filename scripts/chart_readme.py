"""Writes helm/README.md: the chart's own page, its values table made from values.yaml and the
`# --` comments above each value (helm-docs' convention).

    python scripts/chart_readme.py          # rewrite the file
    python scripts/chart_readme.py --check  # exit 1 if the file is stale (the tests do this)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import yaml

CHART = Path(__file__).resolve().parent.parent / "helm"
README = CHART / "README.md"

INTRO = """# sfn-otel-exporter Helm chart

Streams AWS Step Functions executions as OpenTelemetry traces and Prometheus metrics (the
project's README says what the exporter does and how it is configured).

```sh
helm install sfn ./helm --namespace observability --create-namespace \\
  --set aws.region=eu-west-1 \\
  --set serviceAccount.annotations."eks\\.amazonaws\\.com/role-arn"=arn:aws:iam::111122223333:role/sfn-otel-exporter \\
  --set otlp.endpoint=http://otel-collector.observability:4317 \\
  --set serviceMonitor.enabled=true --set prometheusRule.enabled=true
helm test sfn --namespace observability   # a pod asks the exporter's /healthz
```

One replica, `Recreate` (two exporters would count every event twice), probes on `/healthz` and
`/readyz`, a non-root, read-only-root-filesystem container with every capability dropped and no
service account token, the configuration in a ConfigMap (`checksum/config` rolls the pod when it
changes), the checkpoint in an emptyDir or a PersistentVolumeClaim. `values.schema.json` rejects
wrong values and checks `config` against the exporter's own configuration model, so
`helm install` refuses what `sfn-exporter run` would.

**TLS and basic auth.** Put the web configuration file (`web.yml`, the Prometheus exporters'
format) and the files it names in a Secret, and set `web.configSecret` (and `web.tls: true` when
it serves TLS): the probes, the ServiceMonitor or PodMonitor (`scheme`, `tlsConfig`,
`basicAuth`) and `helm test` follow. A renewed certificate in the Secret is picked up without a
restart.

**NetworkPolicy.** When enabled it names every peer: who may scrape (`metricsFrom`, required),
the cluster DNS (`dnsTo`), the AWS API (`awsTo`, HTTPS) and the OTLP collector (`otlpTo`,
required when the collector is outside the pod).

This page is generated from `values.yaml` by `python scripts/chart_readme.py`; a test keeps it
current.

## Values

| value | default | meaning |
| --- | --- | --- |
"""

_KEY = re.compile(r"^(\s*)([A-Za-z][\w.-]*):")
_DOC = re.compile(r"^\s*# -- ?(.*)$")
_MORE = re.compile(r"^\s*# ?(.*)$")


def comments(text: str) -> dict[str, str]:
    """The `# --` comment above each key, by dotted path."""
    found: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    pending: list[str] | None = None
    for line in text.splitlines():
        if (doc := _DOC.match(line)) is not None:
            pending = [doc.group(1)]
            continue
        if pending is not None and line.strip().startswith("#"):
            more = _MORE.match(line)
            pending.append(more.group(1) if more else "")
            continue
        key = _KEY.match(line)
        if key is None:
            continue
        indent = len(key.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, key.group(2)))
        if pending is not None:
            found[".".join(name for _, name in stack)] = " ".join(part for part in pending if part)
            pending = None
    return found


def leaves(values: Any, prefix: str = "") -> list[tuple[str, Any]]:
    if isinstance(values, dict) and values:
        return [leaf for key, value in values.items() for leaf in leaves(value, f"{prefix}{key}.")]
    return [(prefix.rstrip("."), values)]


def render() -> str:
    text = (CHART / "values.yaml").read_text()
    docs = comments(text)
    rows = []
    for path, default in leaves(yaml.safe_load(text)):
        meaning = docs.get(path, "").replace("|", "\\|")
        rows.append(f"| `{path}` | `{json.dumps(default)}` | {meaning} |")
    return INTRO + "\n".join(rows) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if README.read_text() != render():
            print(f"{README} is stale: run python scripts/chart_readme.py", file=sys.stderr)
            sys.exit(1)
    else:
        README.write_text(render())
