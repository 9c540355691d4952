"""Writes helm/values.schema.json: the chart's values, with `config` checked against the
exporter's own configuration model, so `helm install` rejects what `sfn-exporter run` would.

    python scripts/chart_schema.py        # rewrite the file
    python scripts/chart_schema.py --check  # exit 1 if the file is stale (the tests do this)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from exporter.config import Config

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "helm" / "values.schema.json"


def _obj(properties: dict[str, Any], required: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        schema["required"] = required
    schema.update(extra)
    return schema


STR = {"type": "string"}
BOOL = {"type": "boolean"}
MAP = {"type": "object"}
LIST = {"type": "array"}
STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
QUANTITY = {"type": "string", "pattern": "^[0-9]+(\\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$"}
DURATION = {"type": "string", "pattern": "^([0-9]+(ms|s|m|h))+$"}
PORT = {"type": "integer", "minimum": 1, "maximum": 65535}
MONITOR = _obj({
    "enabled": BOOL, "interval": DURATION, "scrapeTimeout": DURATION, "labels": STR_MAP,
    "scheme": {"enum": ["", "http", "https"]}, "tlsConfig": MAP, "basicAuth": MAP,
    "relabelings": LIST, "metricRelabelings": LIST,
})  # fmt: skip


def build() -> dict[str, Any]:
    config = Config.model_json_schema()
    definitions = config.pop("$defs", {})
    config.pop("title", None)
    config["description"] = "The exporter's configuration; see the README's configuration table."
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "sfn-otel-exporter values",
        **_obj({
            "replicaCount": {"type": "integer", "minimum": 0, "maximum": 1,
                             "description": "0 or 1: a second replica would count every event twice"},
            "sharding": _obj({"shards": {"type": "integer", "minimum": 1, "maximum": 1000,
                                         "description": "1: a Deployment; above 1: a StatefulSet of shards"}}),
            "image": _obj({"registry": STR, "repository": {"type": "string", "minLength": 1}, "tag": STR,
                           "digest": {"type": "string", "pattern": "^(sha256:[0-9a-f]{64})?$"},
                           "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]}}, ["repository"]),
            "imagePullSecrets": LIST,
            "nameOverride": STR,
            "fullnameOverride": STR,
            "serviceAccount": _obj({"create": BOOL, "name": STR, "annotations": STR_MAP, "automount": BOOL}),
            "aws": _obj({"region": {"type": "string", "pattern": "^([a-z]{2}(-[a-z]+)+-[0-9]+)?$"}}),
            "otlp": _obj({"endpoint": {"type": "string", "pattern": "^(https?://.+)?$"},
                          "protocol": {"enum": ["grpc", "http/protobuf"]}}),
            "serviceName": {"type": "string", "minLength": 1},
            "config": config,
            "extraEnv": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "envFrom": {"type": "array", "items": {"type": "object"}},
            "extraArgs": {"type": "array", "items": STR},
            "priorityClassName": STR,
            "topologySpreadConstraints": {"type": "array", "items": {"type": "object"}},
            "web": _obj({"configSecret": STR, "tls": BOOL}),
            "extraContainers": {"type": "array", "items": {"type": "object", "required": ["name", "image"]}},
            "extraVolumes": {"type": "array", "items": {"type": "object", "required": ["name"]}},
            "resources": _obj({"requests": _obj({"cpu": QUANTITY, "memory": QUANTITY}),
                               "limits": _obj({"cpu": QUANTITY, "memory": QUANTITY})}),
            "terminationGracePeriodSeconds": {"type": "integer", "minimum": 10,
                                              "description": "the exporter gets 5 seconds less"},
            "podSecurityContext": MAP,
            "securityContext": MAP,
            "checkpoint": _obj({"persistence": _obj({
                "enabled": BOOL, "existingClaim": STR, "storageClass": STR, "size": QUANTITY,
                "accessModes": {"type": "array", "minItems": 1,
                                "items": {"enum": ["ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany"]}},
            })}),
            "service": _obj({"type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]}, "port": PORT,
                             "annotations": STR_MAP}),
            "serviceMonitor": MONITOR,
            "podMonitor": MONITOR,
            "prometheusRule": _obj({"enabled": BOOL, "labels": STR_MAP}),
            "podDisruptionBudget": _obj({"enabled": BOOL, "maxUnavailable": {"type": ["integer", "string"]}}),
            "networkPolicy": _obj({"enabled": BOOL, "metricsFrom": LIST, "dnsTo": LIST, "awsTo": LIST,
                                   "otlpTo": LIST, "otlpPorts": {"type": "array", "items": PORT}}),
            "tests": _obj({"enabled": BOOL}),
            "podAnnotations": STR_MAP,
            "podLabels": STR_MAP,
            "nodeSelector": STR_MAP,
            "tolerations": LIST,
            "affinity": MAP,
        }),
        "$defs": definitions,
    }  # fmt: skip


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        if SCHEMA_PATH.read_text() != render():
            print(f"{SCHEMA_PATH} is stale: run python scripts/chart_schema.py", file=sys.stderr)
            sys.exit(1)
    else:
        SCHEMA_PATH.write_text(render())
