"""What ships to Kubernetes, checked with the real tools: hadolint, Helm's SDK, kubectl's
kustomize, kubernetes-validate --strict, promtool, a Prometheus server."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import helm_python as helm
import pytest
import yaml

from exporter.config import load_config
from tests.corpus import REPO
from tests.prometheus import PrometheusServer, prometheus_binary

BIN = Path(sys.executable).parent
CHART = REPO / "helm"

COMBINATIONS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "monitoring": {"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus"}},
                   "prometheusRule": {"enabled": True}},
    "pvc": {"checkpoint": {"persistence": {"enabled": True, "storageClass": "gp3", "size": "2Gi"}}},
    "sidecar": {
        "otlp": {"endpoint": "http://localhost:4317"},
        "extraContainers": [{
            "name": "otel-collector", "image": "otel/opentelemetry-collector:0.115.1",
            "args": ["--config=/etc/otelcol/collector.yaml"],
            "volumeMounts": [{"name": "collector-config", "mountPath": "/etc/otelcol"}],
            "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
        }],
        "extraVolumes": [{"name": "collector-config", "configMap": {"name": "otel-collector-config"}}],
    },
    "everything": {
        "aws": {"region": "eu-west-1"},
        "serviceAccount": {"annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::111122223333:role/sfn"}},
        "config": {"polling": {"page_size": 200}, "data": {"include_execution_data": True, "redact_paths": ["$.card"]}},
        "podDisruptionBudget": {"enabled": True},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}]},
        "extraEnv": [{"name": "SFN_EXPORTER_LOG__LEVEL", "value": "debug"}],
        "checkpoint": {"persistence": {"enabled": True, "existingClaim": "sfn-state"}},
    },
    "secured": {
        "image": {"registry": "ghcr.io", "digest": "sha256:" + "ab" * 32},
        "web": {"configSecret": "sfn-web", "tls": True},
        "config": {"web": {"telemetry_path": "/stepfunctions/metrics"}},
        "otlp": {"endpoint": "http://otel-collector.observability:4317"},
        "serviceMonitor": {"enabled": True, "tlsConfig": {"ca": {"secret": {"name": "sfn-ca", "key": "ca.crt"}}},
                           "basicAuth": {"username": {"name": "sfn-scrape", "key": "user"},
                                         "password": {"name": "sfn-scrape", "key": "password"}},
                           "metricRelabelings": [{"action": "drop", "sourceLabels": ["__name__"], "regex": "python_.*"}]},
        "podMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True, "metricsFrom": [{"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}],
                          "otlpTo": [{"podSelector": {"matchLabels": {"app": "otel-collector"}}}]},
        "extraArgs": ["--log.level=debug"],
        "envFrom": [{"secretRef": {"name": "sfn-settings"}}],
        "priorityClassName": "observability",
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
                                       "whenUnsatisfiable": "ScheduleAnyway"}],
    },
}  # fmt: skip


def run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, capture_output=True, text=True, timeout=600, check=False)


def render(values: dict[str, Any]) -> list[dict[str, Any]]:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        manifests = chart.render(values, name="sfn", namespace="observability")
    docs = []
    for name, text in manifests.items():
        if name.endswith(".txt"):
            continue
        docs += [doc for doc in yaml.safe_load_all(text) if doc]
    return docs


def validate_strict(docs: list[dict[str, Any]], tmp_path: Path) -> None:
    """kubernetes-validate --strict on every built-in kind; the prometheus-operator kinds have no
    bundled schema, so their content is checked with promtool and by shape below."""
    builtin = [doc for doc in docs if not doc["apiVersion"].startswith("monitoring.coreos.com/")]
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(builtin))
    result = run(str(BIN / "kubernetes-validate"), "--strict", "--quiet", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [doc for doc in docs if doc["kind"] == kind]


# ---------------------------------------------------------------- Dockerfile


def test_dockerfile_passes_hadolint_with_every_ignore_explained() -> None:
    result = run(str(BIN / "hadolint"), "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = (REPO / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert number > 0 and lines[number - 1].startswith("#") and len(lines[number - 1]) > 10, line


def test_dockerfile_shape() -> None:
    text = (REPO / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert len(stages) == 2 and all(re.search(r":\d+\.\d+\.\d+-slim", image) for image in stages)
    assert re.search(r"^USER 10001:10001$", text, re.MULTILINE)
    assert 'ENTRYPOINT ["sfn-exporter", "run"]' in text
    assert 'VOLUME ["/var/lib/sfn-exporter"]' in text
    assert "RUN sh docker/install.sh /opt/sfn-exporter" in text
    final = text.split("FROM ")[2]
    assert "gcc" not in final and "build-essential" not in final and "apt-get" not in final
    assert "pip uninstall --yes --quiet pip setuptools wheel" in final  # no installer where it runs
    labels = dict(re.findall(r"org\.opencontainers\.image\.(\w+)=\"([^\"]*)\"", final))
    assert {"source", "version", "revision", "licenses"} <= set(labels) and labels["licenses"] == "Apache-2.0"
    assert "SFN_EXPORTER_REVISION=${REVISION}" in final  # what sfn_exporter_build_info reports


def test_the_image_install_step_works_in_a_fresh_environment(tmp_path: Path) -> None:
    """No Docker engine here: run the Dockerfile's install script into a new virtual environment."""
    prefix = tmp_path / "opt"
    result = run("sh", str(REPO / "docker" / "install.sh"), str(prefix))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "sfn-exporter 0.1.0"
    check = run(
        str(prefix / "bin" / "sfn-exporter"), "verify-config", "--region", "us-east-1",
        "--web.listen-address", "127.0.0.1:0", cwd=tmp_path,
    )  # fmt: skip
    assert check.returncode == 0, check.stderr
    assert not (prefix / "bin" / "pip").exists()  # the environment has no installer of its own
    assert run(str(prefix / "bin" / "python"), "-m", "pip", "--version").returncode != 0
    imports = run(
        str(prefix / "bin" / "python"),
        "-c",
        "import exporter.app, aiobotocore, opentelemetry.exporter.otlp.proto.grpc.trace_exporter",
        cwd=tmp_path,
    )
    assert imports.returncode == 0, imports.stderr
    tools = run(str(prefix / "bin" / "python"), "-c", "import moto", cwd=tmp_path)
    assert tools.returncode != 0, "test-only packages ended up in the image"


# ---------------------------------------------------------------- Helm chart


def test_chart_lints_clean() -> None:
    result = helm.lint(str(CHART), strict=True)
    assert result["errors"] == []
    assert [m for m in result["messages"] if m["severity"] > 1] == []  # nothing above INFO


def assert_no_token_and_a_test_pod(docs: list[dict[str, Any]], pod: dict[str, Any]) -> None:
    assert pod["automountServiceAccountToken"] is False  # the exporter never calls the Kubernetes API
    for account in by_kind(docs, "ServiceAccount"):
        assert account["automountServiceAccountToken"] is False
    (test_pod,) = [d for d in by_kind(docs, "Pod") if d["metadata"]["annotations"]["helm.sh/hook"] == "test"]
    assert "/healthz" in test_pod["spec"]["containers"][0]["command"][-1]


@pytest.mark.parametrize("combination", sorted(COMBINATIONS))
def test_chart_renders_valid_manifests(combination: str, tmp_path: Path) -> None:
    docs = render(COMBINATIONS[combination])
    validate_strict(docs, tmp_path)
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    exporter = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert exporter["securityContext"] == {
        "allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True, "capabilities": {"drop": ["ALL"]},
    }  # fmt: skip
    assert exporter["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert exporter["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert "checksum/config" in deployment["spec"]["template"]["metadata"]["annotations"]
    (configmap,) = by_kind(docs, "ConfigMap")
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    config = load_config(path, environ={})  # the exporter accepts what the chart renders
    assert config.checkpoint.path == "/var/lib/sfn-exporter/checkpoint.sqlite"
    assert config.shutdown.grace_period_seconds < pod["terminationGracePeriodSeconds"]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    if combination == "pvc":
        assert volumes["checkpoint"]["persistentVolumeClaim"]["claimName"] == "sfn-sfn-otel-exporter"
        (claim,) = by_kind(docs, "PersistentVolumeClaim")
        assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    elif combination == "everything":
        assert volumes["checkpoint"]["persistentVolumeClaim"]["claimName"] == "sfn-state"
        assert not by_kind(docs, "PersistentVolumeClaim")
        assert config.polling.page_size == 200
        assert {"PodDisruptionBudget", "NetworkPolicy"} <= {doc["kind"] for doc in docs}
        (account,) = by_kind(docs, "ServiceAccount")
        assert account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].endswith(":role/sfn")
    else:
        assert volumes["checkpoint"] == {"name": "checkpoint", "emptyDir": {}}
    if combination == "sidecar":
        assert [c["name"] for c in pod["containers"]] == ["exporter", "otel-collector"]
        env = {e["name"]: e.get("value") for e in exporter["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4317" and config.otlp.enabled
    assert_no_token_and_a_test_pod(docs, pod)
    if combination == "monitoring":
        (monitor,) = by_kind(docs, "ServiceMonitor")
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        assert (monitor["spec"]["endpoints"][0]["path"], monitor["spec"]["endpoints"][0]["scheme"]) == (
            "/metrics",
            "http",
        )
        assert monitor["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus"
        (rule,) = by_kind(docs, "PrometheusRule")
        rules = tmp_path / "rules.yml"
        rules.write_text(yaml.safe_dump(rule["spec"]))
        check = run(prometheus_binary("promtool"), "check", "rules", str(rules))
        assert check.returncode == 0, check.stdout + check.stderr
        shipped = yaml.safe_load((REPO / "deploy" / "prometheus" / "alerts.yml").read_text())
        assert rule["spec"] == shipped


def test_the_sharded_chart_is_a_statefulset_whose_pods_find_their_shard(tmp_path: Path) -> None:
    values = {"sharding": {"shards": 3}, "serviceMonitor": {"enabled": True},
              "checkpoint": {"persistence": {"storageClass": "gp3", "size": "2Gi"}}}  # fmt: skip
    docs = render(values)
    validate_strict(docs, tmp_path)
    assert not by_kind(docs, "Deployment") and not by_kind(docs, "PersistentVolumeClaim")
    (statefulset,) = by_kind(docs, "StatefulSet")
    spec = statefulset["spec"]
    assert (spec["replicas"], spec["podManagementPolicy"]) == (3, "Parallel")
    (claim,) = spec["volumeClaimTemplates"]  # one checkpoint claim per shard, kept when scaled down
    assert (
        claim["metadata"]["name"] == "checkpoint"
        and claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    )
    assert claim["spec"]["storageClassName"] == "gp3"
    assert spec["persistentVolumeClaimRetentionPolicy"] == {"whenDeleted": "Retain", "whenScaled": "Retain"}
    pod = spec["template"]["spec"]
    assert "checkpoint" not in {v["name"] for v in pod["volumes"]}  # the claim template provides it
    assert {c["topologyKey"] for c in pod["topologySpreadConstraints"]} == {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone",
    }  # fmt: skip
    services = {s["metadata"]["name"]: s for s in by_kind(docs, "Service")}
    headless = services[spec["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    (budget,) = by_kind(docs, "PodDisruptionBudget")
    assert budget["spec"]["maxUnavailable"] == 1
    (monitor,) = by_kind(docs, "ServiceMonitor")  # the ClusterIP Service selects every shard's pod
    selected = services["sfn-sfn-otel-exporter"]["spec"]["selector"]
    assert monitor["spec"]["selector"]["matchLabels"] == selected
    assert spec["template"]["metadata"]["labels"].items() >= selected.items()
    exporter = pod["containers"][0]
    assert exporter["env"][0] == {
        "name": "POD_NAME",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}},
    }
    # the ordinal wiring: the exporter's own flag parsing, given the pod's arguments and name
    (configmap,) = by_kind(docs, "ConfigMap")
    (tmp_path / "config.yaml").write_text(configmap["data"]["config.yaml"])
    from exporter.cli import _load, build_parser

    args = build_parser().parse_args([
        "run", *(a.replace("/etc/sfn-exporter", str(tmp_path)) for a in exporter["args"])
    ])  # fmt: skip
    config = _load(args)
    assert config.sharding.total_shards == 3 and config.sharding.shard is None
    for ordinal in range(3):
        pod_name = f"{statefulset['metadata']['name']}-{ordinal}"
        assert config.sharding.resolve({"POD_NAME": pod_name}, "ignored") == ordinal
    assert config.quota("GetExecutionHistory").refill_per_second == pytest.approx(20 * 0.5 / 3)


def test_one_shard_is_the_deployment_as_before() -> None:
    docs = render({"sharding": {"shards": 1}})
    assert by_kind(docs, "Deployment") and not by_kind(docs, "StatefulSet")
    (deployment,) = by_kind(docs, "Deployment")
    exporter = deployment["spec"]["template"]["spec"]["containers"][0]
    assert not any(a.startswith("--total-shards") for a in exporter["args"])
    assert "POD_NAME" not in {e["name"] for e in exporter["env"]}


def test_the_secured_chart_wires_tls_auth_monitors_and_peers() -> None:
    docs = render(COMBINATIONS["secured"])
    (deployment,) = by_kind(docs, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    exporter = pod["containers"][0]
    volumes = {volume["name"]: volume for volume in pod["volumes"]}
    assert exporter["image"] == "ghcr.io/sfn-otel-exporter@sha256:" + "ab" * 32
    assert "--web.config.file=/etc/sfn-exporter-web/web.yml" in exporter["args"]
    assert exporter["args"][-1] == "--log.level=debug"
    assert volumes["web"]["secret"]["secretName"] == "sfn-web"
    assert exporter["livenessProbe"]["httpGet"]["scheme"] == "HTTPS"
    assert exporter["envFrom"] == [{"secretRef": {"name": "sfn-settings"}}]
    assert pod["priorityClassName"] == "observability" and pod["topologySpreadConstraints"]
    (service_monitor,) = by_kind(docs, "ServiceMonitor")
    (pod_monitor,) = by_kind(docs, "PodMonitor")
    endpoint = service_monitor["spec"]["endpoints"][0]
    assert (endpoint["path"], endpoint["scheme"]) == ("/stepfunctions/metrics", "https")
    assert endpoint["basicAuth"]["username"]["name"] == "sfn-scrape" and endpoint["tlsConfig"]["ca"]
    assert endpoint["metricRelabelings"][0]["regex"] == "python_.*"
    assert pod_monitor["spec"]["podMetricsEndpoints"][0]["scheme"] == "https"
    (policy,) = by_kind(docs, "NetworkPolicy")
    dns, aws, otlp = policy["spec"]["egress"]
    assert dns["to"][0]["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
    assert [p["port"] for p in aws["ports"]] == [443]
    assert otlp["to"] == [{"podSelector": {"matchLabels": {"app": "otel-collector"}}}]
    assert policy["spec"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"name": "monitoring"}}}
    ]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"networkPolicy": {"enabled": True}}, "networkPolicy.metricsFrom: name the peers"),
        ({"networkPolicy": {"enabled": True, "metricsFrom": [{"podSelector": {}}]},
          "otlp": {"endpoint": "http://collector.observability:4317"}}, "networkPolicy.otlpTo: name the peers"),
    ],
    ids=["no-scrapers", "no-collector"],
)  # fmt: skip
def test_a_network_policy_must_name_its_peers(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm.HelmError) as caught:
        render(values)
    assert message in str(caught.value)


def test_config_changes_change_the_checksum() -> None:
    def checksum(values: dict[str, Any]) -> str:
        (deployment,) = by_kind(render(values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({})
    assert checksum({}) != checksum({"config": {"polling": {"page_size": 10}}})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCount": 2}, "replicaCount"),
        ({"sharding": {"shards": 0}}, "shards"),
        ({"serviceMonitor": {"enabled": "yes"}}, "serviceMonitor"),
        ({"config": {"polling": {"page_size": 5000}}}, "page_size"),
        ({"config": {"polling": {"page_sise": 10}}}, "page_sise"),
        ({"checkpoint": {"persistence": {"size": "lots"}}}, "size"),
        ({"otlp": {"protocol": "thrift"}}, "protocol"),
        ({"imagePullSecret": []}, "imagePullSecret"),
    ],
)
def test_values_schema_rejects_wrong_values_naming_them(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmError) as caught:
        chart.validate_schema(values)
    assert message in str(caught.value)


def test_chart_schema_and_rules_are_current() -> None:
    schema = run(sys.executable, "scripts/chart_schema.py", "--check")
    assert schema.returncode == 0, schema.stderr
    assert (CHART / "files" / "alerts.yml").read_text() == (
        REPO / "deploy" / "prometheus" / "alerts.yml"
    ).read_text()


def test_chart_readme_is_current_and_documents_every_value() -> None:
    check = run(sys.executable, "scripts/chart_readme.py", "--check")
    assert check.returncode == 0, check.stderr
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    page = (CHART / "README.md").read_text()
    for key in ("image.digest", "web.configSecret", "networkPolicy.dnsTo", "serviceMonitor.basicAuth"):
        section, _, leaf = key.partition(".")
        assert leaf in values[section] and f"| `{key}` |" in page


# ---------------------------------------------------------------- plain manifests and IAM


@pytest.mark.parametrize("overlay", ["base", "sidecar", "sharded"])
def test_kustomize_builds_valid_manifests(overlay: str, tmp_path: Path) -> None:
    built = run(str(BIN / "kubectl"), "kustomize", str(REPO / "deploy" / overlay))
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    validate_strict(docs, tmp_path)
    if overlay == "sharded":
        assert not by_kind(docs, "Deployment")
        (deployment,) = by_kind(docs, "StatefulSet")
        spec = deployment["spec"]
        args = spec["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--total-shards") + 1] == str(spec["replicas"])  # the two must agree
        assert spec["serviceName"] in {s["metadata"]["name"] for s in by_kind(docs, "Service")}
        assert spec["volumeClaimTemplates"][0]["metadata"]["name"] == "checkpoint"
        assert by_kind(docs, "PodDisruptionBudget")
    else:
        (deployment,) = by_kind(docs, "Deployment")
    containers = deployment["spec"]["template"]["spec"]["containers"]
    configmap = next(doc for doc in docs if doc["kind"] == "ConfigMap" and "config.yaml" in doc["data"])
    path = tmp_path / "config.yaml"
    path.write_text(configmap["data"]["config.yaml"])
    load_config(path, environ={})
    if overlay == "sidecar":
        assert [c["name"] for c in containers] == ["exporter", "otel-collector"]
        env = {e["name"]: e["value"] for e in containers[0]["env"]}
        assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://localhost:4317"
        collector = next(
            doc for doc in docs if doc["kind"] == "ConfigMap" and "collector.yaml" in doc["data"]
        )
        receivers = yaml.safe_load(collector["data"]["collector.yaml"])["receivers"]
        assert receivers["otlp"]["protocols"]["grpc"]["endpoint"] == "127.0.0.1:4317"
    for container in containers:
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert deployment["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    assert all(
        account["automountServiceAccountToken"] is False for account in by_kind(docs, "ServiceAccount")
    )


def test_iam_policy_grants_exactly_the_calls_the_exporter_makes() -> None:
    source = (REPO / "exporter" / "aws" / "source.py").read_text()
    states, _, logs = source.partition("class AwsCloudWatchLogs")
    called = {f"states:{op}" for op in re.findall(r'self\._call\(\s*"(\w+)"', states)}
    called |= {f"logs:{op}" for op in re.findall(r'self\._call\(\s*"(\w+)"', logs)}
    policy = json.loads((REPO / "deploy" / "iam" / "policy.json").read_text())
    granted = {action for statement in policy["Statement"] for action in statement["Action"]}
    assert granted == called
    assert all(statement["Effect"] == "Allow" for statement in policy["Statement"])
    star = [s for s in policy["Statement"] if s["Resource"] == "*"]
    assert [a for s in star for a in s["Action"]] == ["states:ListStateMachines"]  # the only unscopable one
    for name in ("trust-policy.irsa.json", "trust-policy.pod-identity.json"):
        trust = json.loads((REPO / "deploy" / "iam" / name).read_text())
        assert trust["Statement"][0]["Action"]


# ---------------------------------------------------------------- alert rules and dashboard


def test_alert_rules_pass_promtool_check_and_unit_tests() -> None:
    promtool = prometheus_binary("promtool")
    directory = REPO / "deploy" / "prometheus"
    check = run(promtool, "check", "rules", "alerts.yml", cwd=directory)
    assert check.returncode == 0, check.stdout + check.stderr
    tests = run(promtool, "test", "rules", "alerts_test.yml", cwd=directory)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "SUCCESS" in tests.stdout


def _dashboard_exprs() -> list[str]:
    dashboard = json.loads((REPO / "deploy" / "grafana" / "dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_every_dashboard_query_is_accepted_by_prometheus(tmp_path: Path) -> None:
    from exporter.history.catalogue import WORKFLOW_METRICS

    current = run(sys.executable, "scripts/dashboard.py", "--check")
    assert current.returncode == 0, current.stderr
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    known = {spec.name for spec in WORKFLOW_METRICS}
    readme = (REPO / "README.md").read_text()
    for expr in exprs:
        for name in re.findall(r"\b(sfn_[a-z_]+)", expr):
            base = re.sub(r"_(bucket|count|sum)$", "", name)
            assert base in known or f"`{name}`" in readme or f"`{base}`" in readme, f"unknown metric {name}"
    with PrometheusServer(tmp_path / "prometheus", targets=[]) as prometheus:
        for expr in exprs:
            grafana = (
                expr.replace("$__rate_interval", "5m")
                .replace("$__range", "1h")
                .replace('"$state_machine"', '".*"')
                .replace('"$account"', '".*"')
                .replace('"$region"', '".*"')
            )
            assert "$" not in grafana, grafana
            prometheus.query(grafana)  # raises with Prometheus's error if it rejects the query
        with pytest.raises(RuntimeError, match="bad_data"):
            prometheus.query("sum by (state (rate(sfn_executions_started_total[5m]))")  # the check can fail


def test_the_runtime_lock_pins_with_hashes_what_the_dev_pins_pin() -> None:
    lock = (REPO / "requirements.lock").read_text()
    entries = re.findall(
        r"^([A-Za-z0-9_.-]+)==(\S+) \\\n((?:\s+--hash=sha256:[0-9a-f]{64}(?: \\)?\n)+)", lock, re.MULTILINE
    )
    pinned = {name.lower().replace("_", "-"): version for name, version, _ in entries}
    assert len(entries) == lock.count("==") and all(hashes.strip() for _, _, hashes in entries)
    dev = {
        name.lower().replace("_", "-"): version
        for name, version in re.findall(
            r"^([A-Za-z0-9_.-]+)==(\S+)$", (REPO / "constraints.txt").read_text(), re.MULTILINE
        )
    }
    assert {name: dev.get(name) for name in pinned} == pinned  # the same versions as the tests run
    import tomllib

    runtime = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in runtime:
        name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower().replace("_", "-")
        assert name in pinned, f"{name} is a runtime dependency missing from requirements.lock"
