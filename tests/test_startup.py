"""What stops the exporter at start: unusable checkpoints and settings, found by `verify-config`
and `run` alike, each reported as one line naming the field, path or variable, exit 2."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from exporter.checkpoint import SCHEMA_VERSION, CheckpointError, Cursor, CursorStore
from exporter.config import load_config

BASE_ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": "/tmp",
    "AWS_REGION": "us-east-1",
    "AWS_ACCESS_KEY_ID": "x",
    "AWS_SECRET_ACCESS_KEY": "x",
    "AWS_ENDPOINT_URL_SFN": "http://127.0.0.1:9",
    "SFN_EXPORTER_WEB__LISTEN_ADDRESS": "127.0.0.1:0",
    "SFN_EXPORTER_CHECKPOINT__PATH": ":memory:",
    "SFN_EXPORTER_OTLP__ENABLED": "false",
}


def cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "exporter", *args],
        capture_output=True, text=True, timeout=60, env={**BASE_ENV, **(env or {})}, cwd=cwd, check=False,
    )  # fmt: skip


def refused_alike(args: list[str], env: dict[str, str] | None = None) -> str:
    """verify-config and run both exit 2 with the same single line; returns it."""
    verify = cli("verify-config", *args, env=env)
    run = cli("run", *args, env=env)
    assert verify.returncode == 2, verify.stderr
    assert run.returncode == 2, run.stderr
    line = verify.stderr.strip()
    assert len(line.splitlines()) == 1, verify.stderr
    assert run.stderr.strip() == f"sfn-exporter: refusing to start: {line}", run.stderr
    return line


# ---------------------------------------------------------------- settings run used to crash on


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        ([], {"OTEL_EXPORTER_OTLP_PROTOCOL": "http/json", "SFN_EXPORTER_OTLP__ENABLED": "true"},
         "OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' is not supported; use grpc or http/protobuf"),
        ([], {"OTEL_EXPORTER_OTLP_ENDPOINT": "ftp://collector:4317", "SFN_EXPORTER_OTLP__ENABLED": "true"},
         "OTEL_EXPORTER_OTLP_ENDPOINT: 'ftp://collector:4317': expected http://HOST:PORT or https://HOST:PORT"),
        (["--region", "not a region!"], {},
         "aws.region: 'not a region!' is not an AWS region name (like eu-west-1)"),
        ([], {"AWS_REGION": "Europe"}, "AWS_REGION: 'Europe' is not an AWS region name (like eu-west-1)"),
        ([], {"AWS_REGION": ""}, "aws.region: no AWS region: set AWS_REGION, or aws.region in the config"),
        (["--web.telemetry-path", "/healthz"], {},
         "web.telemetry_path: '/healthz' is taken by the exporter's own endpoints (/, /healthz, /readyz)"),
        (["--web.listen-address", "no-such-host.invalid:9810"], {},
         "web.listen_address: 'no-such-host.invalid:9810': cannot resolve 'no-such-host.invalid': "),
        (["--set", "otlp.batch_linger_seconds=.inf"], {}, "otlp.batch_linger_seconds: Input should be a finite number"),
        (["--set", "checkpoint.path="], {}, "checkpoint.path: String should have at least 1 character"),
    ],
    ids=["otlp-protocol", "otlp-endpoint", "region-flag", "region-env", "no-region", "telemetry-path",
         "unresolvable-host", "infinite-linger", "empty-checkpoint-path"],
)  # fmt: skip
def test_run_and_verify_config_refuse_the_same_settings(
    args: list[str], env: dict[str, str], expected: str
) -> None:
    assert refused_alike(args, env).startswith(expected)


def test_a_listen_address_in_use_is_refused_by_both() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        line = refused_alike(["--web.listen-address", f"127.0.0.1:{port}"])
    assert line == f"web.listen_address: '127.0.0.1:{port}': cannot listen: Address already in use"


def test_a_config_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yml"
    path.write_bytes("log:\n  level: d\xe9bug\n".encode("latin-1"))
    assert refused_alike(["--config", str(path)]) == f"{path}: not UTF-8 text (byte 15)"


def test_string_fields_take_flag_and_variable_text_as_given() -> None:
    flag = cli("verify-config", "--set", "checkpoint.path=:memory:", "--set", "polling.page_size=300")
    assert flag.returncode == 0, flag.stderr
    assert "path: ':memory:'" in flag.stdout and "page_size: 300" in flag.stdout
    config = load_config(
        None, environ={"SFN_EXPORTER_CHECKPOINT__PATH": ":memory:", "SFN_EXPORTER_AWS__REGION": "eu-west-1"}
    )
    assert config.checkpoint.path == ":memory:" and config.aws.region == "eu-west-1"
    # a number-looking name stays text where the field is a string
    assert load_config(None, environ={"SFN_EXPORTER_CHECKPOINT__PATH": "0123"}).checkpoint.path == "0123"


# ---------------------------------------------------------------- checkpoints


def old_schema(path: Path) -> None:
    """A checkpoint as version 1 wrote it (no user_version, no tombstones)."""
    db = sqlite3.connect(path)
    db.executescript(
        "CREATE TABLE executions (arn TEXT PRIMARY KEY, cursor INTEGER NOT NULL, finished INTEGER NOT NULL,"
        " redrives INTEGER NOT NULL DEFAULT 0, updated_at REAL NOT NULL);"
        "CREATE TABLE watermarks (state_machine_arn TEXT PRIMARY KEY, listed_until REAL NOT NULL);"
        "INSERT INTO executions VALUES ('arn:a', 7, 0, 1, 100.0);"
        "INSERT INTO watermarks VALUES ('arn:m', 50.0);"
    )
    db.commit()
    db.close()


def damaged(path: Path) -> None:
    store = CursorStore(str(path))
    for n in range(3000):
        store.save_now(f"arn:aws:states:us-east-1:1:execution:m:{n:06d}", n, False)
    store.close()
    data = bytearray(path.read_bytes())
    data[8192 : 8192 + 4096] = b"\xa5" * 4096  # one page of b-tree garbage
    path.write_bytes(bytes(data))


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A 1 MB tmpfs (the tests run as root, in CI too)."""
    mount = tmp_path / "mnt"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_an_older_schema_is_migrated_and_keeps_its_cursors(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    old_schema(path)
    store = CursorStore(str(path))
    assert store.get("arn:a") == Cursor(7, False, 1) and store.watermark("arn:m") == 50.0
    store.bury("arn:a")  # the new column works
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    db.close()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p.mkdir(), "is a directory"),
        (lambda p: p.write_bytes(b"\x00garbage, not SQLite" * 300), "file is not a database"),
        (lambda p: sqlite3.connect(p).executescript("CREATE TABLE orders (id INTEGER);").close(),
         "not a checkpoint of this exporter (tables: orders(id))"),
        (lambda p: sqlite3.connect(p).executescript("CREATE TABLE t (a); PRAGMA user_version = 99;").close(),
         "written by a newer version of this exporter (schema 99, this one reads 3)"),
        (damaged, "damaged"),
    ],
    ids=["directory", "garbage", "foreign-schema", "newer-schema", "damaged-pages"],
)  # fmt: skip
def test_unusable_checkpoints_are_refused_at_start(tmp_path: Path, make: object, expected: str) -> None:
    path = tmp_path / "checkpoint.sqlite"
    make(path)  # type: ignore[operator]
    with pytest.raises(CheckpointError, match=f"checkpoint.path '{path}': cannot be used: .*") as caught:
        CursorStore(str(path))
    assert expected in str(caught.value)
    line = refused_alike(["--checkpoint.path", str(path)])
    assert line.startswith(f"checkpoint.path '{path}': cannot be used: ") and expected in line


def test_a_version_2_checkpoint_is_migrated_and_its_cursors_go_on_without_state(tmp_path: Path) -> None:
    path = tmp_path / "v2.sqlite"
    old_schema(path)
    db = sqlite3.connect(path)  # as version 2 left it: tombstones and meta, no assembler state
    db.executescript(
        "ALTER TABLE executions ADD COLUMN gone INTEGER NOT NULL DEFAULT 0;"
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL); PRAGMA user_version = 2;"
    )
    db.close()
    store = CursorStore(str(path))
    cursor = store.get("arn:a")
    assert cursor == Cursor(7, False, 1) and cursor is not None and cursor.state is None
    store.save_now("arn:a", 9, False, 1, state=b"kept")
    assert (store.get("arn:a") or Cursor(0, False)).state == b"kept"
    store.save_now("arn:a", 12, True, 1, state=b"not kept once finished")
    assert (store.get("arn:a") or Cursor(0, False)).state is None
    store.close()


def test_a_checkpoint_under_proc_is_refused() -> None:
    line = refused_alike(["--checkpoint.path", "/proc/sfn-exporter/checkpoint.sqlite"])
    assert line.startswith("checkpoint.path '/proc/sfn-exporter/checkpoint.sqlite': cannot be used: ")


def test_read_only_and_full_disks_are_refused_at_start(tmpfs: Path) -> None:
    path = tmpfs / "checkpoint.sqlite"
    CursorStore(str(path)).close()
    filler = os.open(tmpfs / "filler", os.O_WRONLY | os.O_CREAT)
    try:  # fill what is left of the 1 MB
        while os.write(filler, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(filler)
    full = refused_alike(["--checkpoint.path", str(path)])
    assert full.startswith(f"checkpoint.path '{path}': cannot be used: ") and "full" in full
    (tmpfs / "filler").unlink()
    subprocess.run(["mount", "-o", "remount,ro", str(tmpfs)], check=True)
    read_only = refused_alike(["--checkpoint.path", str(path)])
    assert read_only.startswith(f"checkpoint.path '{path}': cannot be used: ") and "readonly" in read_only
    fresh = refused_alike(["--checkpoint.path", str(tmpfs / "new" / "checkpoint.sqlite")])
    assert "Read-only file system" in fresh


def test_run_tunes_the_garbage_collector_before_the_exporter_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Young collections every GC_YOUNG_THRESHOLD allocations (bench.throughput: the default's
    old-generation walks took a third of the time); the older generations' ratios unchanged."""
    import gc

    from exporter import app, cli, logs

    seen: list[tuple[int, int, int]] = []

    async def exporter_started(config: object, hooks: object = None) -> int:
        seen.append(gc.get_threshold())
        return 0

    monkeypatch.setattr(app, "run_exporter", exporter_started)
    monkeypatch.setattr(logs, "setup_logging", lambda fmt, level: None)
    for name, value in BASE_ENV.items():
        monkeypatch.setenv(name, value)
    before = gc.get_threshold()
    try:
        assert cli.main(["run"]) == 0
    finally:
        gc.set_threshold(*before)
    assert seen == [(app.GC_YOUNG_THRESHOLD, before[1], before[2])]
    assert before[0] < app.GC_YOUNG_THRESHOLD
