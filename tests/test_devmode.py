"""Dev mode (``MOTION_ENV=dev``), Motion's semantics: copy-on-write over production state.

A dev handle reads production until its first write; the write goes to the dev
copy only, applied by any worker (one started without ``MOTION_ENV=dev`` too) to
the dev keys; the dev version carries on from production's and is kept (Motion
discarded it); the process deletes its dev copies at exit.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from motion import get_instances, inspect_state
from motion.caller import devmode
from motion.floor import keys as K
from motion.worker import engine
from tests.conftest import reset_motion
from tests.support import COMPONENTS, ROOT, motion_env

sys.path.insert(0, str(COMPONENTS))
from lifecycle_components import Tally

pytestmark = pytest.mark.integration


def _production(count: int) -> Any:
    """Instance Tally__p at version ``count + 1`` (n = count), made in production mode."""
    handle = Tally("p")
    for _ in range(count):
        handle.run("add", {"by": 1, "label": "prod"})
        engine.drain(Tally, "p")
    return handle


@pytest.fixture
def dev(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Switch this process to dev mode (call it after making production state)."""

    def switch() -> None:
        monkeypatch.setenv("MOTION_ENV", "dev")
        reset_motion()

    yield switch
    devmode.cleanup()  # what the exit hook does, while this test's Redis still runs


def test_a_dev_handle_reads_production_then_writes_its_own_copy(  # type: ignore[no-untyped-def]
    redis_url, redis_server, start_worker, dev
) -> None:
    _production(2)
    dev()
    handle = Tally("p")
    assert (handle.read_state("n"), handle.get_version()) == (2, 3)  # production, as it is
    assert not redis_server.client().exists(K.InstanceKeys.of("Tally__DEV:p").meta)
    start_worker(["lifecycle_components"], pool="threads", concurrency=2)  # prod environment
    handle.run("add", {"by": 10, "label": "dev"}, flush_update=True)
    assert handle.read_state("n") == 12
    assert handle.read_state("log") == ["prod", "prod", "dev"]
    assert handle.get_version() == 4  # the dev version goes on from production's
    handle.write_state({"label": "kept"})
    assert handle.get_version() == 5
    assert inspect_state("Tally__p") == {"n": 2, "log": ["prod", "prod"]}  # untouched
    assert inspect_state("Tally__DEV:p")["n"] == 12
    assert get_instances("Tally") == ["p"]  # dev copies are not listed


def test_without_production_state_init_state_creates_only_the_dev_copy(  # type: ignore[no-untyped-def]
    redis_url, redis_server, dev
) -> None:
    dev()
    handle = Tally("fresh")
    assert handle.read_state("n") == 0
    assert redis_server.client().exists(K.InstanceKeys.of("Tally__DEV:fresh").meta)
    assert not redis_server.client().exists(K.InstanceKeys.of("Tally__fresh").meta)
    handle.run("add", {"by": 3, "label": "dev"})
    engine.drain(Tally, "DEV:fresh")  # what any worker does with the wake-up it got
    assert handle.read_state("n") == 3
    assert handle.instance_name == "Tally__fresh" and handle.instance_id == "fresh"


def test_dev_copies_are_deleted_at_exit_and_production_is_kept(redis_url, redis_server) -> None:  # type: ignore[no-untyped-def]
    _production(1)
    code = (
        "from lifecycle_components import Tally\n"
        "h = Tally('p')\n"
        "h.run('add', {'by': 5, 'label': 'dev'}, flush_update=True)\n"
        "assert h.read_state('n') == 6, h.read_state('n')\n"
        "Tally('only-dev').read_state('n')\n"
    )
    env = motion_env(redis_url, MOTION_ENV="dev", MOTION_INPROCESS_WORKER="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=str(ROOT), capture_output=True, timeout=120
    )
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    client = redis_server.client()
    assert not list(client.scan_iter(match="motion:{Tally__DEV:*"))  # every dev key is gone
    assert inspect_state("Tally__p") == {"n": 1, "log": ["prod"]}


def test_production_moving_ahead_never_discards_dev_writes(  # type: ignore[no-untyped-def]
    redis_url, monkeypatch, dev
) -> None:
    """Motion checked a dev write against the *production* version and dropped it once
    production had moved further; here each copy has its own version."""
    _production(1)
    dev()
    handle = Tally("p")
    handle.run("add", {"by": 100, "label": "dev"})  # forks at version 2
    engine.drain(Tally, "DEV:p")
    monkeypatch.delenv("MOTION_ENV")
    reset_motion()
    _production(5)  # production moves on to version 7
    dev()
    handle = Tally("p")
    handle.run("add", {"by": 100, "label": "dev"})
    engine.drain(Tally, "DEV:p")
    assert (handle.read_state("n"), handle.get_version()) == (201, 4)
    assert inspect_state("Tally__p")["n"] == 6
