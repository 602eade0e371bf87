"""A waiting flush is woken by the commit that applies its update (lua/watch.lua, the
woke list of lua/commit.lua), not left to its next poll. Real redis-server; the drains
run in this process (motion.worker.engine.drain), as a worker runs them."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from redis.connection import Connection

from motion.caller import wait
from motion.floor import keys as K
from motion.floor import scripts
from motion.floor.connection import get_redis
from motion.floor.errors import ConnectionFailedError, FlushTimeoutError, UpdateFailedError
from motion.worker import engine
from tests.conftest import reset_motion
from tests.support import COMPONENTS, RedisServer, clear_motion_env, wait_for

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
    """The flush's first pause is 2 s long (a BLPOP within the 5 s socket timeout): only
    the commit's wake ends it sooner."""
    monkeypatch.setattr(wait, "_FIRST_DELAY", 2.0)
    monkeypatch.setattr(wait, "_MAX_DELAY", 2.0)
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
    assert done[0] - committed < 1.0, "the flush waited for its next poll, not the commit"
    assert handle.read_state("seqs") == [1]


def test_redis_lost_while_a_flush_waits_on_its_wake_raises_connection_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The flush's wait on its wake list is a Redis call like the others: a Redis that
    goes away meanwhile raises motion's ConnectionFailedError, not redis-py's error."""
    server = RedisServer(tmp_path / "redis").start()
    try:
        clear_motion_env(monkeypatch, server.url)
        monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
        monkeypatch.setenv("MOTION_REDIS_RETRY_SECONDS", "1")
        reset_motion()
        monkeypatch.setattr(wait, "_FIRST_DELAY", 2.0)  # each pause: a 2 s wait on the list
        monkeypatch.setattr(wait, "_MAX_DELAY", 2.0)
        handle = Ledger("gone")
        handle.run("add", {"item": "a"})  # no worker: it stays pending
        raised: list[BaseException] = []

        def flush() -> None:
            try:
                Ledger("gone").flush_update(timeout=60)
            except BaseException as exc:  # its type is what the test checks
                raised.append(exc)

        waiter = threading.Thread(target=flush, daemon=True)
        waiter.start()
        wait_for(lambda: b"waiters" in _meta(handle), 10, "the flush to register")
        server.stop()
        waiter.join(30)
        assert raised and isinstance(raised[0], ConnectionFailedError), raised
    finally:
        server.stop()
        reset_motion()


def test_a_handle_with_a_short_socket_timeout_times_out_as_a_flush(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A handle's ``redis_socket_timeout`` below the wait's longest pause: the flush
    waits by polling, and ends in FlushTimeoutError after its timeout (Redis is fine)."""
    monkeypatch.setenv("MOTION_REDIS_RETRY_SECONDS", "2")
    reset_motion()
    handle = Ledger("short", redis_socket_timeout=0.02)
    handle.run("add", {"item": "a"})  # no worker: it stays pending
    started = time.monotonic()
    with pytest.raises(FlushTimeoutError):
        handle.flush_update(timeout=1)
    assert time.monotonic() - started < 1.5


def _round_trips(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the commands this process sends from now on (one per round trip here:
    nothing below pipelines), through redis-py's client and the fast lane alike."""
    sent: list[int] = []
    real = Connection.send_packed_command

    def counting(self: Connection, *args: Any, **kwargs: Any) -> None:
        sent.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "send_packed_command", counting)
    return sent


def test_a_flush_whose_updates_are_applied_is_one_round_trip(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first look (lua/watch.lua) reads the seq to wait for, the parked updates and
    the failure records at once: an applied update costs its flush one round trip, and
    a failed one is raised from what that round trip read."""
    handle = Ledger("one-look")
    handle.run("add", {"item": "a"})
    engine.drain(Ledger, handle.instance_id)
    handle.flush_update(timeout=5)  # (the scripts are loaded now)
    handle.run("add", {"item": "b"})
    engine.drain(Ledger, handle.instance_id)
    sent = _round_trips(monkeypatch)
    handle.flush_update(timeout=5)
    assert len(sent) == 1
    handle.run("flaky", {"item": "c", "fail": True})
    engine.drain(Ledger, handle.instance_id)
    del sent[:]
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=5)
    assert len(sent) == 1
    assert [f.seq for f in raised.value.failures] == [3]
    del sent[:]
    handle.flush_update(timeout=5)  # reported once: the next flush raises nothing
    assert len(sent) == 1
    assert handle.read_state("seqs") == [1, 2]


def test_a_flush_with_nothing_enqueued_reads_once_and_returns(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = Ledger("never-fed")
    handle.flush_update(timeout=5)  # (connects, and loads the script)
    sent = _round_trips(monkeypatch)
    handle.flush_update(timeout=5)
    assert len(sent) == 1
