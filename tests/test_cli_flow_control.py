"""``motion failed|retry|drop|pause|resume`` on a real redis-server, with a real worker subprocess,
run in-process (``main``) and as the installed command (a process without the code).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from motion import Ticket
from motion.errors import UpdateFailedError
from motion.tools.cli import main
from tests.support import COMPONENTS, ROOT, motion_env

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from tickets import Tickets  # noqa: E402


def _failed(handle: object, tmp_path: Path, item: str) -> tuple[Ticket, Path]:
    poison = tmp_path / f"poison-{item}"
    poison.write_text("x")
    ticket = handle.submit("note", {"item": item, "poison": str(poison)})  # type: ignore[attr-defined]
    with pytest.raises(UpdateFailedError):
        ticket.wait(timeout=60)
    return ticket, poison


@pytest.mark.parametrize("command", ["failed", "retry", "drop", "pause", "resume"])
def test_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert f"example: motion {command}" in capsys.readouterr().out


def test_failed_lists_retry_reapplies_drop_removes(
    redis_url: str, start_worker, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    start_worker(["tickets"])
    handle = Tickets("cli")
    first, poison = _failed(handle, tmp_path, "one")
    second, _ = _failed(handle, tmp_path, "two")
    assert main(["failed", handle.instance_name]) == 0
    out = capsys.readouterr()
    assert f"#{first.seq} note op note" in out.out and "ValueError: poisoned item 'one'" in out.out
    assert "'item': 'two'" in out.out and "2 dead letter(s)" in out.err
    assert main(["failed", handle.instance_name, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dropped"] == 0
    assert [(x["seq"], x["props"]["item"]) for x in shown["failed"]] == [
        (first.seq, "one"),
        (second.seq, "two"),
    ]
    poison.unlink()
    assert main(["retry", handle.instance_name, str(first.seq), "--wait", "60"]) == 0
    out = capsys.readouterr().out
    assert f"#{first.seq} re-enqueued as #" in out and "applied" in out
    first.wait(timeout=5)  # the old ticket follows the retry
    assert handle.read_state("items") == ["one"]
    assert main(["drop", handle.instance_name, str(second.seq)]) == 0
    assert "dropped dead letter" in capsys.readouterr().out
    assert handle.failed_updates() == []
    # errors: exit 1 with a message saying what to fix
    assert main(["drop", handle.instance_name, str(second.seq)]) == 1
    assert "is not a dead letter" in capsys.readouterr().err
    assert main(["retry", handle.instance_name, "99"]) == 1
    assert "is not a dead letter" in capsys.readouterr().err
    assert main(["failed", "Tickets__nobody"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["failed", "no-separator"]) == 1


def test_the_commands_need_no_component_code(redis_url: str, start_worker, tmp_path: Path) -> None:
    """The ``motion`` command in a process that never imported ``tickets``."""
    start_worker(["tickets"])
    handle = Tickets("no-code")
    ticket, poison = _failed(handle, tmp_path, "far")
    env = motion_env(redis_url)
    env["PYTHONPATH"] = str(ROOT)  # not the components folder

    def motion(*argv: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "motion.tools.cli", *argv]
        return subprocess.run(command, env=env, cwd=str(ROOT), capture_output=True, text=True)

    listed = motion("failed", handle.instance_name, "--json")
    assert listed.returncode == 0, listed.stderr
    (letter,) = json.loads(listed.stdout)["failed"]
    assert letter["props"] == {"item": "far", "poison": str(poison)}
    poison.unlink()
    retried = motion("retry", handle.instance_name, str(ticket.seq), "--wait", "60")
    assert retried.returncode == 0, retried.stderr
    ticket.wait(timeout=5)
    assert handle.read_state("items") == ["far"]


def test_pause_holds_a_flow_and_resume_releases_it_in_order(
    redis_url: str, start_worker, capsys: pytest.CaptureFixture[str]
) -> None:
    start_worker(["tickets"])
    handle = Tickets("paused")
    assert main(["pause", handle.instance_name, "--flow", "note"]) == 0
    assert "flow 'note' paused" in capsys.readouterr().out
    assert main(["pause", handle.instance_name, "--flow", "note"]) == 0
    assert "already" in capsys.readouterr().out
    held = [handle.submit("note", {"item": i}) for i in ("1", "2")]
    handle.submit("strict", {"item": "other"}).wait(timeout=60)  # other flows go on
    assert handle.read_state("items") == ["other"] and not held[0].done()
    assert main(["resume", handle.instance_name, "--flow", "note"]) == 0
    assert "resumed" in capsys.readouterr().out
    for ticket in held:
        ticket.wait(timeout=60)
    assert handle.read_state("items") == ["other", "1", "2"]
    assert main(["pause", handle.instance_name]) == 0  # the whole instance
    assert "every flow paused" in capsys.readouterr().out
    assert main(["resume", handle.instance_name]) == 0
    assert main(["pause", handle.instance_name, "--flow", "bad::name"]) == 1
