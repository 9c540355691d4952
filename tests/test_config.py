"""Configuration: good and bad files (exact messages), environment, flags, verify-config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from exporter.config import Config, ConfigError, load_config

CASES = Path(__file__).parent / "config_cases"
GOOD = sorted(CASES.glob("*.ok.yml"))
BAD = sorted(CASES.glob("*.bad.yml"))


def expected_errors(path: Path) -> list[str]:
    return [
        line.removeprefix("# error: ")
        for line in path.read_text().splitlines()
        if line.startswith("# error: ")
    ]


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_files_load(path: Path) -> None:
    assert isinstance(load_config(path, environ={}), Config)


def test_the_full_file_sets_what_it_says() -> None:
    config = load_config(CASES / "full.ok.yml", environ={})
    assert config.polling.page_size == 200 and config.polling.concurrency == 16
    assert config.state_machines.tags == {"team": "payments"}
    assert config.data.redact_paths == ["$.customer.email", "$..password", "$.items[*].card"]
    quota = config.api.quota("GetExecutionHistory")
    assert (quota.bucket, quota.refill_per_second) == (200, 10)  # a quarter of the override
    assert config.api.quota("ListExecutions").refill_per_second == 1.25  # a quarter of the published 5
    assert config.web.host_port == ("0.0.0.0", 9810)


def test_defaults() -> None:
    config = load_config(None, environ={})
    assert config.polling.page_size == 100
    assert config.api.quota_share == 0.5
    assert config.data.include_execution_data is False
    assert config.web.listen_address == ":9810" and config.web.host_port == ("0.0.0.0", 9810)
    assert config.web.telemetry_path == "/metrics"


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_files_are_refused_with_exact_errors(path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    lines = str(caught.value).splitlines()
    expected = expected_errors(path)
    assert expected, f"{path.name} names no expected error"
    if path.name == "toplevel.bad.yml":
        assert lines[0].startswith(f"{path}: not valid YAML")
        return
    assert lines == [f"{path}: {error}" for error in expected]


def test_environment_overrides_the_file_and_flags_override_both(tmp_path: Path) -> None:
    path = tmp_path / "c.yml"
    path.write_text("polling:\n  page_size: 10\n  concurrency: 3\n")
    env = {
        "SFN_EXPORTER_POLLING__PAGE_SIZE": "20",
        "SFN_EXPORTER_DATA__REDACT_PATHS": '["$.a"]',
        "OTHER": "x",
    }
    config = load_config(path, {"polling.concurrency": 7}, environ=env)
    assert (config.polling.page_size, config.polling.concurrency) == (20, 7)
    assert config.data.redact_paths == ["$.a"]


def test_a_bad_environment_value_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"^polling.page_size: Input should be a valid integer"):
        load_config(None, environ={"SFN_EXPORTER_POLLING__PAGE_SIZE": "many"})


def test_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yml: cannot read: No such file or directory"):
        load_config(tmp_path / "nope.yml", environ={})


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "HOME": "/tmp", "AWS_REGION": "us-east-1"}
    env |= {"SFN_EXPORTER_WEB__LISTEN_ADDRESS": "127.0.0.1:0", "SFN_EXPORTER_CHECKPOINT__PATH": ":memory:"}
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def test_verify_config_prints_the_effective_configuration() -> None:
    result = run_cli("verify-config", "--config", str(CASES / "full.ok.yml"), "--web.listen-address", ":9999")
    assert result.returncode == 0, result.stderr
    assert "listen_address: :9999" in result.stdout and "page_size: 200" in result.stdout
    assert "configuration OK" in result.stderr


def test_verify_config_and_run_refuse_a_bad_file_with_the_same_message() -> None:
    path = CASES / "page_size.bad.yml"
    verify = run_cli("verify-config", "--config", str(path))
    run = run_cli("run", "--config", str(path))
    assert verify.returncode == run.returncode == 2
    expected = "\n".join(f"{path}: {error}" for error in expected_errors(path))
    assert verify.stderr.strip() == expected
    assert run.stderr.strip() == f"sfn-exporter: refusing to start: {expected}"


def test_set_flag_reaches_any_field() -> None:
    result = run_cli(
        "verify-config", "--set", "polling.page_size=300", "--set", "data.include_execution_data=true"
    )
    assert result.returncode == 0, result.stderr
    assert "page_size: 300" in result.stdout and "include_execution_data: true" in result.stdout
    bad = run_cli("verify-config", "--set", "polling.page_size")
    assert bad.returncode == 2 and "expected FIELD=VALUE" in bad.stderr
