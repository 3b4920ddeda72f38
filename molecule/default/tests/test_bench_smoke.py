"""Smoke test of the throughput benchmark (tests/bench/throughput.py) on small N: it completes on the
converged lab and prints its table. Its figures (docs/benchmarks.md) come from a real run on the lab, not from CI.
"""

import subprocess
import sys
from pathlib import Path

import pytest

# The benchmark is the project's tooling, not the roles on a release: Debian 12 runs it.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parents[3]


def test_the_throughput_benchmark_runs_to_its_table():
    done = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "throughput.py"), "--count", "20", "--rounds", "1",
         "--posters", "1", "4", "--latency", "0", "20", "--timeout", "120"],
        cwd=str(ROOT), text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=900, check=False)
    out = done.stdout
    assert done.returncode == 0, out[-3000:]
    # One row per condition and round (the kept-alive posters' levels, the new-connection posters at the best
    # level), the summary, the worker's memory at each condition and the targets' line.
    rows = [line for line in out.splitlines() if " | " in line]
    assert any(line.startswith("none ") and "(1:" in line and " 4:" in line for line in rows), out
    assert any(line.startswith("20 ms ") and " at " in line for line in rows), out
    assert any("kept-alive gain" in line for line in rows), out
    assert "xapi@encoding:20" in out, out
    assert "worker memory on encoding: 1 process(es)" in out and "(20 ms, 32 slots)" in out, out
    assert "targets: pipeline >=" in out, out
