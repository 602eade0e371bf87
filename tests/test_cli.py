"""The ``motion`` command on a real redis-server (and a worker started by ``motion worker``)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from motion.tools.cli import main
from tests.support import COMPONENTS, ROOT, Worker, motion_env, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402

COMMANDS = ["list", "inspect", "clear", "status", "flush", "copy", "worker", "metrics"]


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
def test_help_on_every_command(command, capsys) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SystemExit) as exited:
        main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: motion {' '.join(command)}".rstrip())
    if command:
        assert "example: motion " + command[0] in out


def test_usage_errors_exit_2(capsys) -> None:  # type: ignore[no-untyped-def]
    for argv in ([], ["nope"], ["list"], ["list", "Notes", "--bogus"]):
        with pytest.raises(SystemExit) as exited:
            main(argv)
        assert exited.value.code == 2, argv


def test_list_inspect_clear_status(redis_url, capsys) -> None:  # type: ignore[no-untyped-def]
    Notes("ann", {"owner": "Ann"}).run("add", {"text": "hello"})
    Notes("bob").read_state("owner")
    assert main(["list", "Notes"]) == 0
    out = capsys.readouterr()
    assert out.out.split() == ["ann", "bob"] and "2 instance(s)" in out.err
    assert main(["inspect", "Notes__ann"]) == 0
    assert json.loads(capsys.readouterr().out) == {"owner": "Ann", "notes": []}
    assert main(["status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["component", "pending", "inst"]
    assert table[1].split()[:3] == ["Notes", "1", "1"]
    assert main(["status", "--json", "Notes"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["component"], row["pending_instances"], row["pending_updates"]) == ("Notes", 1, 1)
    assert main(["clear", "Notes__ann"]) == 0
    assert capsys.readouterr().out.strip() == "cleared Notes__ann"
    assert main(["clear", "Notes__ann"]) == 1
    assert "not found" in capsys.readouterr().err
    assert main(["inspect", "Notes__ann"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["inspect", "bad-name"]) == 1
    assert "Component__instance_id" in capsys.readouterr().err


def test_redis_url_option_in_a_fresh_process(redis_url) -> None:  # type: ignore[no-untyped-def]
    Notes("carol").read_state("owner")
    env = {k: v for k, v in motion_env(redis_url).items() if k != "MOTION_REDIS_URL"}
    for argv in (
        ["--redis-url", redis_url, "list", "Notes"],
        ["list", "Notes", "--redis-url", redis_url],
    ):
        out = subprocess.run(
            [sys.executable, "-m", "motion.tools.cli", *argv],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert out.stdout.split() == ["carol"]


def test_motion_worker_applies_updates_and_flush_waits(
    redis_url, workers, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    handle = Notes("dave")
    handle.run("add", {"text": "one"})
    handle.run("add", {"text": "two", "fail": True})
    assert main(["flush", "Notes__dave", "--timeout", "0.2"]) == 1
    assert "not applied within 0.2s" in capsys.readouterr().err

    worker = Worker(redis_url, ["admin_components"], tmp_path / "logs")
    log = str(worker.log)
    worker.args = [
        *(sys.executable, "-m", "motion.tools.cli", "worker"),
        *("-I", "admin_components", "-P", "solo", "-n", worker.name, "-f", log, "-l", "INFO"),
        *("--without-mingle", "--without-gossip"),
    ]
    codes: list[int] = []
    # started before the worker, the flush waits for (and reports) both pending updates
    waiter = threading.Thread(
        target=lambda: codes.append(
            main(["flush", "Notes__dave", "--flow", "add", "--timeout", "30"])
        )
    )
    waiter.start()
    workers.append(worker.start())
    waiter.join(30)
    assert codes == [1]
    err = capsys.readouterr().err
    assert "1 update(s) failed" in err and "refusing note 'two'" in err
    assert handle.read_state("notes") == ["one"]
    handle.run("add", {"text": "three"})
    assert main(["flush", "Notes__dave", "--timeout", "30"]) == 0
    assert "applied through update #3" in capsys.readouterr().out
    assert handle.read_state("notes") == ["one", "three"]
    # the Celery worker's own log names the instance in the outcome of the task that
    # drained it: its result, or the DrainFailedError it raised when one motion.ready task
    # drained all three updates (written when the task ends, after the last commit)
    wait_for(
        lambda: re.search(r"(succeeded|raised|failed)[^\n]*Notes__dave", Path(log).read_text()),
        30,
        "the worker's log to name the instance in a task's outcome",
    )
    assert main(["status", "--json"]) == 0
    [row] = json.loads(capsys.readouterr().out)
    assert (row["applied"], row["failed"], row["pending_updates"]) == (2, 1, 0)
