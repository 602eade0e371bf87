"""A waiting flush is woken by the commit that applies its update (lua/watch.lua, the
woke list of lua/commit.lua), not left to its next poll. Real redis-server; the drains
run in this process (motion.worker.engine.drain), as a worker runs them."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from motion.caller import wait
from motion.floor import keys as K
from motion.floor import scripts
from motion.floor.connection import get_redis
from motion.worker import engine
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


def _keys(handle: Any) -> K.InstanceKeys:
    return K.InstanceKeys.of(handle.instance_name)


def _watch(handle: Any, target: int, register: bool = True) -> Any:
    args = [target, "1" if register else ""]
    return scripts.run(get_redis(), "watch", [_keys(handle).meta], args)


def _meta(handle: Any) -> dict[bytes, bytes]:
    return get_redis().hgetall(_keys(handle).meta)  # type: ignore[no-any-return]


def _woke(handle: Any) -> int:
    return int(get_redis().llen(_keys(handle).woke))


def test_watch_registers_only_a_flush_that_must_wait_on_an_existing_instance(
    redis_url: str,
) -> None:
    ghost = K.InstanceKeys.of(K.instance_name("Ledger", "never-created")).meta
    assert scripts.run(get_redis(), "watch", [ghost], [1, "1"]) == [None, None]
    assert not get_redis().exists(ghost)  # nothing created for it
    handle = Ledger("watched")
    handle.run("add", {"item": "a"})
    applied, inc = _watch(handle, 1, register=False)
    assert applied == b"0" and inc and b"waiters" not in _meta(handle)
    _watch(handle, 1)
    _watch(handle, 1)
    assert _meta(handle)[b"waiters"] == b"2"
    engine.drain(Ledger, handle.instance_id)
    assert _watch(handle, 1)[0] == b"1"  # applied: not registered again
    assert b"waiters" not in _meta(handle)


def test_the_commit_wakes_each_registered_waiter_and_resets_the_count(redis_url: str) -> None:
    handle = Ledger("woken")
    handle.run("add", {"item": "a"})
    for _ in range(3):
        _watch(handle, 1)
    assert _woke(handle) == 0
    engine.drain(Ledger, handle.instance_id)
    assert _woke(handle) == 3
    assert b"waiters" not in _meta(handle)
    # a commit with no one waiting pushes nothing
    handle.run("add", {"item": "b"})
    get_redis().delete(_keys(handle).woke)
    engine.drain(Ledger, handle.instance_id)
    assert _woke(handle) == 0


def test_a_flush_ends_on_the_commit_not_on_its_next_poll(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush's first pause is 20 s long: only the commit's wake ends it sooner."""
    monkeypatch.setattr(wait, "_FIRST_DELAY", 20.0)
    monkeypatch.setattr(wait, "_MAX_DELAY", 20.0)
    handle = Ledger("prompt")
    handle.run("add", {"item": "a"})
    done: list[float] = []

    def flush() -> None:
        Ledger("prompt").flush_update(timeout=60)
        done.append(time.monotonic())

    waiter = threading.Thread(target=flush, daemon=True)
    waiter.start()
    wait_for(lambda: b"waiters" in _meta(handle), 20, "the flush to register as a waiter")
    committed = time.monotonic()
    engine.drain(Ledger, handle.instance_id)
    waiter.join(30)
    assert done, "the flush did not end"
    assert done[0] - committed < 10, "the flush waited for its next poll, not the commit"
    assert handle.read_state("seqs") == [1]
