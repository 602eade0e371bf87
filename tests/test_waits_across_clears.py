"""Waits that hang or answer wrongly around clears and held instances.

Real redis-server; real Celery worker subprocesses where a worker applies updates.
"""

from __future__ import annotations

import sys
import threading
import time
import types
from typing import Any

import pytest

from motion.caller import wait
from motion.errors import InstanceClearedError, InstanceNotFoundError, MotionError
from motion.floor import drive
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.tools import admin
from motion.worker import engine
from tests.conftest import reset_motion
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402
from slow_rolling_v2 import SlowRolling  # noqa: E402  (the callers have the new code)


def _flush_in_thread(
    monkeypatch: pytest.MonkeyPatch, name: str, timeout: float | None
) -> tuple[threading.Thread, dict[str, Any], threading.Event]:
    """Run ``admin.flush_instance`` in a thread; the event is set once it polls."""
    polling = threading.Event()

    def sleep(seconds: float) -> None:
        polling.set()
        time.sleep(seconds)

    monkeypatch.setattr(drive, "time", types.SimpleNamespace(monotonic=time.monotonic, sleep=sleep))
    result: dict[str, Any] = {}

    def flush() -> None:
        try:
            result["returned"] = admin.flush_instance(name, timeout=timeout)
        except BaseException as exc:
            result["raised"] = exc

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    assert polling.wait(10), "flush_instance never started polling"
    return thread, result, polling


def test_flush_instance_does_not_take_a_new_lifes_updates_for_the_cleared_ones(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = Ledger("flushed")
    old.run("add", {"item": "old-1"})
    old.run("add", {"item": "old-2"})
    name = old.instance_name
    thread, result, _ = _flush_in_thread(monkeypatch, name, timeout=30)
    # the instance is cleared (its two updates dropped) and created again
    admin.clear_instance(name)
    new = Ledger("flushed")
    new.run("add", {"item": "new-1"})
    new.run("add", {"item": "new-2"})
    engine.drain(Ledger, "flushed")
    assert new.read_state("items") == ["new-1", "new-2"]
    thread.join(30)
    assert not thread.is_alive()
    # The flush waited for updates #1-#2 of the cleared life; they were never applied.
    assert "raised" in result, (
        f"flush_instance returned {result.get('returned')!r}: it took the new life's "
        f"updates #1-#2 for the cleared life's, which were dropped unapplied"
    )
    assert isinstance(result["raised"], (InstanceClearedError, InstanceNotFoundError))


def test_flush_instance_of_a_cleared_instance_returns(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = Ledger("gone")
    handle.run("add", {"item": "a"})
    name = handle.instance_name
    thread, result, _ = _flush_in_thread(monkeypatch, name, timeout=None)
    admin.clear_instance(name)
    try:
        thread.join(10)
        assert not thread.is_alive(), (
            "flush_instance(timeout=None) of a cleared instance still waits after 10 s "
            "(it polls the missing meta's applied counter forever)"
        )
        assert isinstance(result.get("raised"), MotionError), result
    finally:  # let a hanging flush end: an applied counter past its target
        get_redis().hset(K.InstanceKeys.of(name).meta, "applied", 10**9)
        thread.join(10)


def test_a_held_instance_being_drained_by_a_worker_with_the_code_is_waited_for(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A caller waits with no timeout; the grace before it asks about workers is 1 s.
    monkeypatch.setenv("MOTION_WORKER_GRACE_SECONDS", "1")
    reset_motion()
    client = get_redis()
    old = start_worker(["slow_rolling_v1"], pool="solo", concurrency=1, name="old")
    handle = SlowRolling("deploying")
    name = handle.instance_name
    keys = K.InstanceKeys.of(name)
    handle.run("slow", {})  # only the new code has flow "slow": the old worker holds it
    wait_for(lambda: client.hget(keys.meta, "held"), 30, "the old worker to hold the instance")
    old.stop()
    # the new code arrives: its worker takes the held instance and runs the (slow) op
    start_worker(["slow_rolling_v2"], pool="solo", concurrency=1, name="new")
    wait_for(lambda: client.get("slow:running"), 30, "the new worker to run the op")
    assert client.get(keys.lease) is not None, "the new worker holds the lease"
    checks: list[bool] = []
    real_due = wait._Patience.due

    def due(self: Any) -> bool:
        """Record each time the wait asks whether any worker can go on."""
        asks = real_due(self)
        if asks:
            checks.append(asks)
        return asks

    monkeypatch.setattr(wait._Patience, "due", due)
    result: dict[str, Any] = {}

    def flush() -> None:
        try:
            handle.flush_update()
            result["ok"] = True
        except BaseException as exc:
            result["raised"] = exc

    thread = threading.Thread(target=flush, daemon=True)
    thread.start()
    try:
        # two presence checks while the new worker applies the update: a live worker
        # with the code is draining the instance, so the wait must go on
        wait_for(lambda: len(checks) >= 2 or not thread.is_alive(), 30, "two presence checks")
        assert "raised" not in result, (
            f"flush_update() gave up while a worker with the code was applying the update: "
            f"{result['raised']!r} (the 'held' mark stays until the first commit)"
        )
    finally:
        client.set("slow:go", 1)
        thread.join(60)
    assert result.get("ok"), result
    assert handle.read_state("seqs") == [1]


def test_a_dashboard_write_to_a_cleared_instance_is_not_reported_applied(
    redis_url: str,
) -> None:
    from motion.tools import browse

    old = Ledger("written")
    assert old.read_state("items") == []  # created, nothing queued
    name = old.instance_name
    inbox = K.InstanceKeys.of(name).inbox
    result: dict[str, Any] = {}

    def write() -> None:
        try:
            result["returned"] = browse.write_state(name, {"items": ["written"]}, timeout=30)
        except BaseException as exc:
            result["raised"] = exc

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    wait_for(lambda: get_redis().hlen(inbox) == 1, 10, "the write to be queued (#1)")
    admin.clear_instance(name)  # the write is dropped with its incarnation
    new = Ledger("written")
    new.run("add", {"item": "new-1"})  # #1 of the new life
    engine.drain(Ledger, "written")
    assert new.read_state("items") == ["new-1"]
    thread.join(30)
    assert not thread.is_alive()
    assert isinstance(result.get("raised"), InstanceClearedError), (
        f"write_state reported {result.get('returned')!r}: the new life's update #1 was "
        f"taken for the write, which was dropped with the cleared incarnation"
    )
