"""Targets and shards in the configuration; which shard owns what, and the layout the checkpoint
records (exporter.shards)."""

from __future__ import annotations

import itertools
import textwrap
from pathlib import Path

import pytest

from exporter.app import units
from exporter.checkpoint import CursorStore
from exporter.config import Config, ConfigError, load_config
from exporter.shards import Layout, ordinal, owner

ISSUE_EXAMPLE = """\
targets:
  - regions: [us-east-1, eu-west-1]              # the ambient credentials' account
  - role_arn: arn:aws:iam::111111111111:role/sfn-exporter
    external_id: example
    regions: [us-east-1, eu-west-1]
"""


def test_the_documented_targets_shape_loads_as_written(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(ISSUE_EXAMPLE)
    config = load_config(path, environ={})
    found = [(u.target.role_arn, u.target.external_id, u.region) for u in units(config, None)]
    assert found == [
        (None, None, "us-east-1"),
        (None, None, "eu-west-1"),
        ("arn:aws:iam::111111111111:role/sfn-exporter", "example", "us-east-1"),
        ("arn:aws:iam::111111111111:role/sfn-exporter", "example", "eu-west-1"),
    ]
    assert config.targets[1].account == "111111111111"
    assert config.targets[0].account is None


def test_no_targets_is_one_the_ambient_credentials_in_the_default_region() -> None:
    config = Config()
    [unit] = units(config, "eu-central-1")
    assert (unit.target.role_arn, unit.region, unit.target.state_machines) == (None, "eu-central-1", None)
    with pytest.raises(ConfigError, match=r"aws.region: no AWS region"):
        units(config, None)
    with pytest.raises(ConfigError, match=r"targets.0.regions: no AWS region"):
        units(Config.model_validate({"targets": [{}]}), None)


@pytest.mark.parametrize(
    ("targets", "message"),
    [
        ([{"role_arn": "arn:aws:iam::1111:role/x"}], "targets.0.role_arn: Value error, 'arn:aws:iam::1111:role/x' is not an IAM role ARN"),
        ([{"external_id": "abc", "regions": ["us-east-1"]}], "targets.0: Value error, external_id is only used with role_arn"),
        ([{"regions": ["Europe"]}], "targets.0.regions: Value error, item 0: 'Europe' is not an AWS region name"),
        ([{"regions": ["us-east-1", "us-east-1"]}], "targets.0.regions: Value error, a region is listed twice"),
        ([{"regions": ["us-east-1"]}, {"regions": ["us-east-1"]}], "targets.1: the ambient account in region us-east-1 is listed twice"),
        ([{"duration_seconds": 60}], "targets.0.duration_seconds: Input should be greater than or equal to 900"),
        ([{"session_name": "a b"}], "targets.0.session_name: String should match pattern"),
        ([{"role": "x"}], "targets.0.role: unknown field"),
    ],
)  # fmt: skip
def test_bad_targets_are_refused_naming_the_field(
    targets: list[dict[str, object]], message: str, tmp_path: Path
) -> None:
    import yaml

    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump({"targets": targets}))
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert message.replace("Value error, ", "") in str(caught.value).replace("Value error, ", ""), str(
        caught.value
    )


def test_a_target_may_have_its_own_state_machine_filter(tmp_path: Path) -> None:
    path = tmp_path / "config.yml"
    path.write_text(
        textwrap.dedent("""\
        state_machines: {name_pattern: "^orders"}
        targets:
          - regions: [us-east-1]
          - role_arn: arn:aws:iam::111111111111:role/sfn-exporter
            regions: [us-east-1]
            state_machines: {name_pattern: "^billing"}
        """)
    )
    first, second = units(load_config(path, environ={}), None)
    assert first.target.state_machines is None  # the top-level filter applies
    assert second.target.state_machines is not None and second.target.state_machines.accepts("x", "billing-1")


def test_shards_divide_the_quota_share_unless_told_otherwise() -> None:
    one = Config.model_validate({"api": {"quota_share": 0.6}})
    three = Config.model_validate({"api": {"quota_share": 0.6}, "sharding": {"total_shards": 3}})
    own = Config.model_validate(
        {"api": {"quota_share": 0.6}, "sharding": {"total_shards": 3, "quota_share": 0.5}}
    )
    assert one.quota("GetExecutionHistory").refill_per_second == pytest.approx(12)
    assert three.quota("GetExecutionHistory").refill_per_second == pytest.approx(4)
    assert own.quota("GetExecutionHistory").refill_per_second == pytest.approx(10)
    logs = Config.model_validate({"logs": {"quota_share": 0.3}, "sharding": {"total_shards": 3}})
    assert logs.quota("FilterLogEvents").refill_per_second == pytest.approx(0.5)


def test_the_shard_comes_from_the_flag_or_the_statefulset_pods_ordinal() -> None:
    sharding = Config.model_validate({"sharding": {"total_shards": 4}}).sharding
    assert sharding.resolve({"POD_NAME": "sfn-exporter-3"}, "ignored") == 3
    assert sharding.resolve({}, "sfn-exporter-2") == 2
    with pytest.raises(
        ConfigError,
        match=r"sharding.shard: the pod ordinal 7 of 'sfn-exporter-7' is not below total_shards 4",
    ):
        sharding.resolve({"POD_NAME": "sfn-exporter-7"}, "x")
    with pytest.raises(
        ConfigError, match=r"'laptop' \(POD_NAME or the host name\) does not end in a StatefulSet ordinal"
    ):
        sharding.resolve({}, "laptop")
    explicit = Config.model_validate({"sharding": {"total_shards": 4, "shard": 1}}).sharding
    assert explicit.resolve({"POD_NAME": "sfn-exporter-3"}, "x") == 1
    assert Config().sharding.resolve({"POD_NAME": "sfn-exporter-3"}, "x") == 0  # one process: shard 0
    with pytest.raises(ConfigError, match=r"sharding: shard 4 is not below total_shards 4"):
        load_config(None, {"sharding.shard": 4, "sharding.total_shards": 4}, environ={})
    assert ordinal("release-sfn-exporter-12") == 12 and ordinal("sfn-exporter") is None


def test_every_state_machine_has_one_owner_and_few_move_when_shards_are_added() -> None:
    arns = [f"arn:aws:states:us-east-1:123456789012:stateMachine:machine-{n}" for n in range(3000)]
    for total in (1, 2, 3, 5):
        owners = [owner(arn, total) for arn in arns]
        assert set(owners) == set(range(total))
        shares = [owners.count(shard) / len(arns) for shard in range(total)]
        assert max(shares) - min(shares) < 0.06  # an even split
    moved = sum(owner(arn, 3) != owner(arn, 4) for arn in arns) / len(arns)
    assert 0.2 < moved < 0.3  # about 1/4 move to the new shard, none between the old ones
    assert all(owner(arn, 4) == 3 for arn in arns if owner(arn, 3) != owner(arn, 4))


def test_the_checkpoint_records_the_layout_and_what_moved_in(tmp_path: Path) -> None:
    path = str(tmp_path / "c.sqlite")
    ticks = itertools.count(100.0, 100.0)  # each open and each layout reads the clock
    clock = ticks.__next__
    arns = [f"arn:aws:states:us-east-1:1:stateMachine:m{n}" for n in range(200)]
    store = CursorStore(path, clock=lambda: 0.0)
    lone = store.layout(0, 1)
    assert lone == Layout(0, 1, None, 0.0) and not any(lone.moved_in(a) for a in arns)  # a lone start: afresh
    store.close()
    store = CursorStore(path, clock=clock)
    two = store.layout(0, 2)  # from 1 to 2: shard 0 keeps what it owns, gains nothing
    assert two.previous == (0, 1) and two.changed_at == 200.0
    assert not any(two.moved_in(a) for a in arns if two.owns(a))
    store.close()
    store = CursorStore(path, clock=clock)
    assert store.layout(0, 2) == two  # unchanged: the record (and its moves) stand across restarts
    back = store.layout(0, 1)  # from 2 to 1: shard 0 takes over shard 1's
    assert back.previous == (0, 2)
    assert {a for a in arns if back.moved_in(a)} == {a for a in arns if owner(a, 2) == 1}
    store.close()
    fresh = CursorStore(str(tmp_path / "new.sqlite"), clock=lambda: 50.0).layout(2, 3)
    assert fresh.changed_at == 50.0 and all(fresh.moved_in(a) for a in arns)  # a new shard of a fleet


def test_an_unreadable_layout_record_stops_the_start(tmp_path: Path) -> None:
    from exporter.checkpoint import CheckpointError

    store = CursorStore(str(tmp_path / "c.sqlite"))
    store.set_meta("shards", "garbage")
    with pytest.raises(CheckpointError, match="unreadable shard layout 'garbage'"):
        store.layout(0, 2)


def test_preflight_needs_no_default_region_when_every_target_names_its_own() -> None:
    from exporter.preflight import preflight

    named = Config.model_validate(
        {"targets": [{"regions": ["eu-west-1"]}], "checkpoint": {"path": ":memory:"}}
    )
    assert not [p for p in preflight(named, environ={}, for_run=True) if "region" in p]
    unnamed = Config.model_validate(
        {"targets": [{"regions": ["eu-west-1"]}, {}], "checkpoint": {"path": ":memory:"}}
    )
    assert any(
        p.startswith("aws.region: no AWS region") for p in preflight(unnamed, environ={}, for_run=True)
    )
    sharded = Config.model_validate({"sharding": {"total_shards": 3}, "aws": {"region": "eu-west-1"}})
    problems = preflight(sharded, environ={"POD_NAME": "laptop"}, for_run=True)
    assert any("sharding.shard: not set, and 'laptop'" in p for p in problems)
