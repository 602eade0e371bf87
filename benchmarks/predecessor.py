"""Motion 0.1.132 in its own virtualenv (``benchmarks/.motion-python-venv``), run as a subprocess.

Both Motion and this project are imported as ``motion``, so Motion runs in a
separate virtualenv and process: :func:`ensure_venv` creates it on first use
(``pip install motion-python==0.1.132 requests``: Motion imports ``requests``
without declaring it) and :func:`run` calls ``motion_python_driver.py`` there,
pointed at the benchmark's redis-server with Motion's ``MOTION_REDIS_*`` variables.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness import HERE, BenchError
from benchmarks.workloads import Config

VERSION = "0.1.132"
VENV = HERE / ".motion-python-venv"
PYTHON = VENV / "bin" / "python"


_PROBE = "import importlib.metadata as m, motion, requests; print(m.version('motion-python'))"


def _installed() -> str:
    if not PYTHON.exists():
        return ""
    out = subprocess.run(
        [str(PYTHON), "-P", "-c", _PROBE],
        capture_output=True,
        text=True,
        cwd="/",
    )
    return out.stdout.strip()


def ensure_venv() -> Path:
    """The virtualenv's Python, with Motion installed (creates the venv once)."""
    if _installed() == VERSION:
        return PYTHON
    print(f"  installing motion-python=={VERSION} into {VENV} ...", flush=True)
    if not PYTHON.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(PYTHON), "-m", "pip", "install", "-q", f"motion-python=={VERSION}", "requests"],
        check=True,
        cwd="/",
    )
    if _installed() != VERSION:
        raise BenchError(f"could not install motion-python=={VERSION} into {VENV}")
    return PYTHON


def run(
    cfg: Config, workloads: list[str], tmp: Path
) -> tuple[dict[str, float], list[tuple[str, bool, str]]]:
    """Run ``workloads`` on Motion; its metrics and checks (a failure becomes a check)."""
    try:
        python = ensure_venv()
    except (OSError, subprocess.CalledProcessError, BenchError) as exc:
        return {}, [("Motion 0.1.132 installed", False, str(exc))]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOTION_", "PYTHON"))}
    port = cfg.url.rsplit(":", 1)[1].split("/")[0]
    # the driver's own modules (motion_python_*.py) beside it; nothing else of this project
    env.update(MOTION_REDIS_HOST="127.0.0.1", MOTION_REDIS_PORT=port, PYTHONPATH=str(HERE))
    folder = tmp / "motion-python"
    folder.mkdir(exist_ok=True)
    args = [str(python), "-P", str(HERE / "motion_python_driver.py"), "run"]
    args += ["--workloads", ",".join(workloads)] + (["--quick"] if cfg.quick else [])
    try:
        out = subprocess.run(args, env=env, cwd=folder, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired:
        return {}, [("Motion 0.1.132 finished within 15 minutes", False, "timed out")]
    lines = out.stdout.strip().splitlines()
    try:
        data: dict[str, Any] = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        detail = (out.stdout + out.stderr)[-2000:]
        return {}, [("Motion 0.1.132 driver printed results", False, detail)]
    checks = [(str(w), bool(ok), str(d)) for w, ok, d in data["checks"]]
    return {k: float(v) for k, v in data["metrics"].items()}, checks
