"""Many accounts, regions and shards, with real parts: the exporter as processes against moto
(which keeps each account's and region's resources apart and maps AssumeRole credentials to the
role's account), behind a proxy that counts history reads per execution and per caller, and
refuses to let a missing role be assumed; a real OTLP receiver."""

from __future__ import annotations

import signal
from collections import defaultdict
from pathlib import Path

import boto3

from exporter.history.assembler import SpanAssembler
from exporter.history.catalogue import BY_NAME
from exporter.model import ExecutionIdentity
from tests.aws_proxy import AwsProxy
from tests.harness import ExporterProcess, Workload, fast_config, wait_until
from tests.moto_server import MotoServer
from tests.otlp_receiver import GrpcOtlpServer

OTHER = "arn:aws:iam::111111111111:role/sfn-exporter"
MISSING = "arn:aws:iam::333333333333:role/sfn-exporter"
REGIONS = ("us-east-1", "eu-west-1")
SAMPLES = ["always-fails", "parallel-fanout"]
COUNTERS = ("sfn_executions_started_total", "sfn_executions_finished_total", "sfn_states_entered_total",
            "sfn_states_finished_total", "sfn_task_attempts_total")  # fmt: skip

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def role_credentials(endpoint: str, role: str) -> dict[str, str]:
    sts = boto3.client(
        "sts", endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id="testing", aws_secret_access_key="testing",
    )  # fmt: skip
    found = sts.assume_role(RoleArn=role, RoleSessionName="deployer")["Credentials"]
    return {"aws_access_key_id": found["AccessKeyId"], "aws_secret_access_key": found["SecretAccessKey"],
            "aws_session_token": found["SessionToken"]}  # fmt: skip


def truth(workloads: list[Workload]) -> Samples:
    """The counters once every execution was counted once, labelled by its target."""
    counted: Samples = defaultdict(float)
    for workload in workloads:
        for arn in workload.executions:
            identity = ExecutionIdentity.from_arn(arn)
            for observation in SpanAssembler(identity).feed(workload.history(arn)).observations:
                if observation.metric in COUNTERS:
                    labels = zip(BY_NAME[observation.metric].labels, observation.labels, strict=True)
                    key = tuple(sorted([("account", identity.account), ("region", identity.region), *labels]))
                    counted[(observation.metric, key)] += observation.value
    return dict(counted)


def counters(*processes: ExporterProcess) -> Samples:
    summed: Samples = defaultdict(float)
    for process in processes:
        for (name, labels), value in process.samples().items():
            if name in COUNTERS and value:
                summed[(name, labels)] += value
    return dict(summed)


def test_one_process_reads_two_accounts_in_two_regions_and_a_missing_role_stops_nothing(
    tmp_path: Path,
) -> None:
    with (
        MotoServer() as moto,
        AwsProxy(moto.endpoint, missing_roles={MISSING}) as proxy,
        GrpcOtlpServer() as otlp,
    ):
        other = role_credentials(moto.endpoint, OTHER)
        workloads = [Workload(moto.endpoint, region) for region in REGIONS]
        workloads += [Workload(moto.endpoint, region, other) for region in REGIONS]
        for workload in workloads:
            workload.deploy(SAMPLES)
            for name in SAMPLES:
                workload.start(name)
        wait_until(lambda: all(w.all_finished() for w in workloads), 60, "the executions to finish")
        config = fast_config(tmp_path)
        config["targets"] = [
            {"regions": list(REGIONS)},
            {"role_arn": OTHER, "external_id": "example", "regions": list(REGIONS)},
            {"role_arn": MISSING, "regions": ["us-east-1"]},
        ]
        exporter = ExporterProcess(tmp_path, config, proxy.endpoint, otlp.endpoint)
        exporter.env["AWS_ENDPOINT_URL_STS"] = proxy.endpoint
        exporter.start()
        try:
            wanted = {
                f"{s.span_id:016x}": ExecutionIdentity.from_arn(arn)
                for w in workloads for arn in w.executions for s in w.expected_spans(arn)
            }  # fmt: skip
            wait_until(lambda: set(wanted) <= {s.span_id for s in otlp.receiver.snapshot()}, 60, "every span")
            for span in otlp.receiver.snapshot():  # each with its own target's account and region
                identity = wanted[span.span_id]
                assert span.resource["cloud.account.id"] == identity.account
                assert span.resource["cloud.region"] == identity.region
            assert {w.executions[0].split(":")[4] for w in workloads} == {"123456789012", "111111111111"}
            expected = truth(workloads)
            wait_until(lambda: counters(exporter) == expected, 30, "the counters to equal the truth")
            samples = exporter.samples()
            up = {
                labels: value for (name, labels), value in samples.items() if name == "sfn_exporter_target_up"
            }
            assert up == {
                (("account", account), ("region", region)): value
                for account, region, value in [
                    ("123456789012", "us-east-1", 1), ("123456789012", "eu-west-1", 1),
                    ("111111111111", "us-east-1", 1), ("111111111111", "eu-west-1", 1),
                    ("333333333333", "us-east-1", 0),
                ]
            }  # fmt: skip
            errors = (("account", "333333333333"), ("region", "us-east-1"))
            assert samples[("sfn_exporter_credential_errors_total", errors)] >= 1
            assert proxy.assume_role_calls[OTHER] >= 1
            _, ready = exporter.get("/readyz")
            assert exporter.get("/readyz")[0] == 200, ready  # the missing role keeps nobody out of service
            assert "cannot assume the role" in exporter.log() and MISSING in exporter.log()
            assert (
                "SecretAccessKey" not in exporter.log()
                and other["aws_secret_access_key"] not in exporter.log()
            )
        finally:
            exporter.signal(signal.SIGTERM)
            assert exporter.wait(30) == 0


def test_three_shards_read_each_execution_once_and_a_killed_shard_resumes(tmp_path: Path) -> None:
    names = ["parallel-fanout", "map-concurrency", "retry-then-catch", "always-fails", "nested-map-parallel"]
    with MotoServer() as moto, AwsProxy(moto.endpoint) as proxy:
        workload = Workload(moto.endpoint)
        workload.deploy(names)
        names = list(workload.machines)
        receivers = [GrpcOtlpServer() for _ in range(3)]
        for receiver in receivers:
            receiver.__enter__()
        shards: list[ExporterProcess] = []
        configs = []

        def shard_process(shard: int) -> ExporterProcess:
            process = ExporterProcess(tmp_path, configs[shard], proxy.endpoint, receivers[shard].endpoint)
            process.env.update(AWS_ACCESS_KEY_ID=f"shard{shard}", AWS_ENDPOINT_URL_STS=proxy.endpoint)
            return process.start()

        try:
            for shard in range(3):
                (tmp_path / f"shard-{shard}").mkdir()
                configs.append(
                    fast_config(tmp_path / f"shard-{shard}", sharding={"shard": shard, "total_shards": 3})
                )
                shards.append(shard_process(shard))
            for _ in range(2):
                for name in names:
                    workload.start(name)
            wait_until(workload.all_finished, 60, "the first executions to finish")
            wanted = {
                f"{s.span_id:016x}" for arn in workload.executions for s in workload.expected_spans(arn)
            }

            def received() -> list[list[str]]:
                return [[s.span_id for s in r.receiver.snapshot()] for r in receivers]

            wait_until(lambda: set(wanted) <= {i for ids in received() for i in ids}, 60, "every span")
            expected = truth([workload])
            wait_until(lambda: counters(*shards) == expected, 30, "sum() over shards to be the truth")
            # SIGKILL shard 1 and start it again with the same ordinal and checkpoint
            before = counters(shards[1])
            shards[1].signal(signal.SIGKILL)
            shards[1].wait(10)
            for name in names:
                workload.start(name)
            shards[1] = shard_process(1)
            wait_until(workload.all_finished, 60, "the later executions to finish")
            wanted = {
                f"{s.span_id:016x}" for arn in workload.executions for s in workload.expected_spans(arn)
            }
            wait_until(lambda: set(wanted) <= {i for ids in received() for i in ids}, 60, "every span, after")
            # each span from one shard only (a shard may send its own again after the kill: the
            # deterministic ids make that harmless; no span comes from two shards)
            owners = senders(received())
            assert set(owners) == wanted
            assert all(len(o) == 1 for o in owners.values()), [i for i, o in owners.items() if len(o) > 1]
            readers = proxy.readers()
            assert set(readers) == set(workload.executions)
            assert all(len(keys) == 1 for keys in readers.values()), readers  # no execution read by two
            assert len({next(iter(keys)) for keys in readers.values()}) == 3  # all three took a share
            expected = truth([workload])
            wait_until(
                lambda: _sum(before, counters(*shards)) == expected, 30, "sum() over shards and restarts"
            )
        finally:
            for process in shards:
                if process.process is not None and process.process.poll() is None:
                    process.signal(signal.SIGTERM)
                    process.wait(30)
            for receiver in receivers:
                receiver.__exit__(None, None, None)


def senders(received: list[list[str]]) -> dict[str, set[int]]:
    """Span id -> the shards whose receiver got it."""
    owners: dict[str, set[int]] = defaultdict(set)
    for shard, ids in enumerate(received):
        for span_id in ids:
            owners[span_id].add(shard)
    return owners


def _sum(*parts: Samples) -> Samples:
    total: Samples = defaultdict(float)
    for part in parts:
        for key, value in part.items():
            total[key] += value
    return dict(total)
