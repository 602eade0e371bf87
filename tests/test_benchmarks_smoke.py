"""The benchmark suite stays runnable and correct: its quick mode on two workloads.

Runs ``python -m benchmarks --quick --only W1,W3 --no-motion-python`` (its own
redis-server and worker subprocess, no Motion 0.1.132) and checks that it exits
cleanly, measured both workloads, and that every correctness check passed.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parent.parent


def test_quick_benchmark_runs_and_checks_pass(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    args = [sys.executable, "-m", "benchmarks", "--quick", "--only", "W1,W3", "--no-motion-python"]
    proc = subprocess.run(
        [*args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    measured = data["results"]["motion"]
    for key in ("W1.100B.p50", "W1.1MB.p99", "W1t.100B.p50", "W3.ups"):
        assert measured[key] > 0 and not math.isnan(measured[key]), key
    checks = data["checks"]
    assert any("W3" in what for _, what, _, _ in checks)
    assert all(ok for _, _, ok, _ in checks), [c for c in checks if not c[2]]
    assert "| W3 | one hot instance" in proc.stdout
