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


def test_quick_w10_w11_produce_their_figures(tmp_path: Path) -> None:
    """W10 (LLM-scale concurrency, threads and gevent workers) and W11 (Redis cost
    per update, and raw Celery's) at tiny sizes: they finish and report every figure."""
    out = tmp_path / "results.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    args = [sys.executable, "-m", "benchmarks", "--quick", "--only", "W10,W11"]
    proc = subprocess.run(
        [*args, "--no-motion-python", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(out.read_text())
    measured, base = data["results"]["motion"], data["results"]["baseline"]
    for variant in ("async", "gevent"):
        wall, ideal = measured[f"W10.{variant}.wall"], measured[f"W10.{variant}.ideal"]
        assert ideal <= wall < 60, (variant, wall, ideal)  # a commit cannot beat the wait
        assert measured[f"W10.{variant}.rss_mb"] > 10, variant
    for key in ("W11.cpu_us", "W11.cmds", "W11.round_trips", "W11.evalsha"):
        assert measured[key] > 0 and not math.isnan(measured[key]), key
    for key in ("W0.cost.cpu_us", "W0.cost.cmds", "W0.cost.round_trips"):
        assert base[key] > 0 and not math.isnan(base[key]), key
    assert all(ok for _, _, ok, _ in data["checks"]), [c for c in data["checks"] if not c[2]]
    assert "| W11 | Redis CPU per applied update" in proc.stdout
