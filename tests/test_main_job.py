"""The main job (``examples/shopping_assistant.py``, run by ``examples/run.sh``) shows the
promise: prompts served at once on the last committed state while a slow update runs,
then on the new version; and every run starts from a clean shopper."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = pytest.mark.integration

SERVED = re.compile(r"\[\s*([\d.]+) s\] asked: .*\n\s+served in ([\d.]+) ms on version (\d+);")
COMMITTED = re.compile(r"\[\s*([\d.]+) s\] update #1 committed: version 2")


def run_main_job(cwd: Path) -> str:
    """Run the example as a new user does: no Redis configured (the embedded default)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MOTION_", "OPENAI_"))}
    env.update(MOTION_EXAMPLE_LLM_SECONDS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "shopping_assistant.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_main_job_serves_on_the_old_version_while_the_slow_update_runs(tmp_path: Path) -> None:
    for run in (1, 2):  # the second run starts clean too: its first prompt is on version 1
        out = run_main_job(tmp_path)
        served = [(float(t), float(ms), int(v)) for t, ms, v in SERVED.findall(out)]
        assert len(served) == 4, out
        committed = COMMITTED.search(out)
        assert committed is not None, out
        assert [v for _, _, v in served] == [1, 1, 1, 2], f"run {run}:\n{out}"
        # questions 2 and 3 were served before update #1 (1 s of simulated LLM) committed
        assert all(t < float(committed.group(1)) for t, _, _ in served[1:3]), out
        assert served[3][0] >= float(committed.group(1)), out
        assert all(ms < 1000 for _, ms, _ in served[1:]), out  # faster than the update
        assert "State version: 5" in out, out
        assert (tmp_path / ".motion").is_dir()  # where it says the state persists
