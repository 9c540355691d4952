"""Small runs of the benchmarks, so they never rot; they assert that they work, not speed."""

from __future__ import annotations

import subprocess
import sys

from tests.corpus import REPO


def test_assembler_benchmark_prints_its_table() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_assembler", "--repeat", "1", "--events", "2000"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:2] == ["workload", "events"]
    assert lines[1].startswith("one history of 2,000 events") and "2,000" in lines[1]
    assert lines[2].startswith("recorded corpus (691 histories)")
    ratios = [float(line.rsplit(None, 1)[-1].rstrip("x")) for line in lines[1:]]
    assert all(ratio > 0 for ratio in ratios)
