"""Bounded everywhere: Redis calls time out, async clients do not pile up, the serve
cache and the failure records stay bounded, cache keys do not collide."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from motion import Component, UpdateFailedError
from motion.errors import ConnectionFailedError
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.inbox import Update
from motion.floor.store import StateCache
from motion.worker.inprocess import start_inprocess_worker, stop_inprocess_worker
from tests.conftest import reset_motion
from tests.support import RedisServer, bump_version, clear_motion_env, wait_for

pytestmark = pytest.mark.integration

Hung = Component("Hung", cache_ttl=0)


@Hung.init_state
def hung_setup() -> dict:
    return {"n": 0}


@Hung.serve("get")
def hung_get(state, props):
    return state["n"]


@Hung.update("get")
def hung_bump(state, props):
    return {"n": state["n"] + 1}


PASSWORD = "hung-s3cret"


@pytest.fixture
def paused_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A redis-server of the test's own (with a password), SIGSTOPped by the test and
    resumed at the end."""
    server = RedisServer(tmp_path / "hung", password=PASSWORD).start()
    clear_motion_env(monkeypatch, server.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    reset_motion()
    yield server
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGCONT)
    reset_motion()
    server.stop()


def pause(server: RedisServer) -> None:
    assert server.proc is not None
    os.kill(server.proc.pid, signal.SIGSTOP)


def outcome(call: Callable[[], Any], seconds: float) -> tuple[BaseException | None, float]:
    """Run ``call`` in a thread; its exception and how long it took. Fails the test if it
    is still blocked after ``seconds``."""
    box: dict[str, Any] = {}

    def target() -> None:
        started = time.monotonic()
        try:
            call()
        except BaseException as exc:
            box["error"] = exc
        box["elapsed"] = time.monotonic() - started

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the call is still blocked after {seconds}s"
    return box.get("error"), box["elapsed"]


def check_failure(error: BaseException | None) -> None:
    assert isinstance(error, ConnectionFailedError), repr(error)
    message = str(error)
    assert "127.0.0.1" in message and PASSWORD not in message
    assert "MOTION_REDIS_URL" in message or "MOTION_REDIS_SOCKET_TIMEOUT" in message


def test_a_hung_redis_fails_run_within_the_budget(paused_redis, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_REDIS_SOCKET_TIMEOUT", "0.5")
    monkeypatch.setenv("MOTION_REDIS_RETRY_SECONDS", "2")
    reset_motion()
    handle = Hung("h1")
    assert handle.run("get") == 0  # a local copy: the next run takes the fast path
    pause(paused_redis)
    error, elapsed = outcome(lambda: handle.run("get"), 10)
    check_failure(error)
    assert elapsed < 4
    # the pooled client's path: a new instance (no local copy), created by its handle
    error, elapsed = outcome(lambda: Hung("h2").run("get"), 10)
    check_failure(error)
    assert elapsed < 4


def test_a_hung_redis_fails_arun_within_the_budget(paused_redis, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_REDIS_SOCKET_TIMEOUT", "0.5")
    monkeypatch.setenv("MOTION_REDIS_RETRY_SECONDS", "2")
    reset_motion()
    handle = Hung("a1")
    assert asyncio.run(handle.arun("get")) == 0
    pause(paused_redis)
    error, elapsed = outcome(lambda: asyncio.run(handle.arun("get")), 10)
    check_failure(error)
    assert elapsed < 4


def test_the_handle_option_redis_socket_timeout_applies_to_its_calls(paused_redis) -> None:  # type: ignore[no-untyped-def]
    quick = Hung("o1", redis_socket_timeout=0.3)
    assert quick.run("get") == 0
    pause(paused_redis)
    error, elapsed = outcome(lambda: quick.run("get"), 30)
    check_failure(error)
    assert elapsed < 5  # with the default socket timeout (5 s) the first try alone takes 5 s


def test_with_the_defaults_a_hung_redis_fails_a_call_within_the_20_second_budget(
    paused_redis,
) -> None:  # type: ignore[no-untyped-def]
    handle = Hung("d1")
    assert handle.run("get") == 0
    pause(paused_redis)
    error, elapsed = outcome(lambda: handle.run("get"), 40)
    check_failure(error)
    assert elapsed < 21  # MOTION_REDIS_RETRY_SECONDS (20) and the 5 s socket timeout


def test_client_tracking_distrusts_copies_when_redis_hangs(paused_redis, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from motion.caller import tracking

    monkeypatch.setattr(tracking, "CHECK_SECONDS", 0.3, raising=False)
    monkeypatch.setenv("MOTION_CLIENT_TRACKING", "1")
    reset_motion()
    handle = Hung("t1")
    assert handle.run("get") == 0
    tracker = tracking.get_tracker(paused_redis.url)
    wait_for(lambda: tracker.listener_id is not None, 10, "the tracking listener")
    pause(paused_redis)
    wait_for(lambda: tracker.listener_id is None, 10, "the listener to notice the hung Redis")


# -- asyncio.run per call ---------------------------------------------------------------
Quick = Component("Quick", cache_ttl=0)


@Quick.serve("get")
async def quick_get(state, props):
    return props["i"]


@Quick.update("get")
def quick_note(state, props):
    return {"last": props["i"]}


def test_asyncio_run_per_call_keeps_redis_clients_bounded(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Quick("q1")
    observer = get_redis()
    before = len(observer.client_list())
    for i in range(1100):
        assert asyncio.run(handle.arun("get", {"i": i})) == i
    after = len(observer.client_list())
    assert after - before <= 5, f"{after - before} more Redis clients after 1,100 calls"


# -- the serve cache ----------------------------------------------------------------------
Keyed = Component("Keyed")  # default cache_ttl: a day


@Keyed.init_state
def keyed_setup() -> dict:
    return {"seen": []}


def shape(props: dict[Any, Any]) -> list[tuple[str, str]]:
    return sorted((type(k).__name__, type(v).__name__) for k, v in props.items())


@Keyed.serve("shape")
def keyed_shape(state, props):
    return shape(props)


@Keyed.update("shape")
def keyed_note(state, props):
    return {"seen": [*state["seen"], shape(props)]}


def test_props_that_differ_only_in_type_do_not_share_a_cache_entry(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Keyed("k1")
    calls: list[dict[Any, Any]] = [
        {1: "a"},
        {"1": "a"},
        {"v": (1, 2)},
        {"v": [1, 2]},
        {"v": 1},
        {"v": True},
        {"v": 1.0},
    ]
    expected = [shape(props) for props in calls]
    assert [handle.run("shape", props) for props in calls] == expected
    assert [handle.run("shape", props) for props in calls] == expected  # hits agree too
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
    finally:
        stop_inprocess_worker()
    assert handle.read_state("seen") == expected + expected  # each update got its own props


Counted = Component("Counted")
serves: list[int] = []


@Counted.init_state
def counted_setup() -> dict:
    return {"n": 0}


@Counted.serve("get")
def counted_get(state, props):
    serves.append(1)
    props["seen"] = True  # left for the update op, restored on a hit
    return state["n"]


@Counted.update("get")
def counted_bump(state, props):
    assert props["seen"] is True
    return {"n": state["n"] + 1}


def cache_keys(name: str) -> list[bytes]:
    client = get_redis()
    return list(client.scan_iter(match=f"{K.InstanceKeys.of(name).prefix}cache*"))


def test_unencodable_props_skip_the_cache(redis_url) -> None:  # type: ignore[no-untyped-def]
    serves.clear()
    handle = Counted("u1")
    marker = object()
    handle.run("get", {"o": marker})
    handle.run("get", {"o": marker})
    assert len(serves) == 2 and cache_keys(handle.instance_name) == []


def test_superseded_cache_entries_go_away_and_do_not_copy_the_props(redis_url) -> None:  # type: ignore[no-untyped-def]
    serves.clear()
    handle = Counted("c1")
    blob = "x" * 200_000
    assert handle.run("get", {"blob": blob}) == 0
    assert handle.run("get", {"blob": blob}) == 0 and len(serves) == 1  # a hit
    client = get_redis()
    stored = sum(client.memory_usage(key) or 0 for key in cache_keys(handle.instance_name))
    assert 0 < stored < 20_000, f"the cache entry takes {stored} bytes for 200 kB of props"
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
    finally:
        stop_inprocess_worker()
    assert handle.get_version() == 3
    assert cache_keys(handle.instance_name) == []  # the commits dropped version 1's entry
    assert handle.run("get", {"blob": blob}) == 2 and len(serves) == 2


def test_a_cache_entry_computed_before_a_commit_is_not_stored(redis_url) -> None:  # type: ignore[no-untyped-def]
    from motion.floor import cache

    handle = Counted("r1")
    assert handle.read_state("n") == 0  # created at version 1
    keys = K.InstanceKeys.of(handle.instance_name)
    props = {"a": 1}
    first = get_redis().hget(keys.meta, "tag")
    entry = cache.cache_write(
        Counted, keys, "get", cache.call_digest(Counted, props), first, 0, props
    )
    assert entry is not None
    bump_version(get_redis(), keys.meta)  # a commit lands while the serve op runs
    cache.store_entry(entry)[0](get_redis())  # the step's sync form
    handle._enqueue(Update("get", props, 0), entry)  # the pipelined write, too
    assert cache_keys(handle.instance_name) == []
    second = get_redis().hget(keys.meta, "tag")
    current = cache.cache_write(
        Counted, keys, "get", cache.call_digest(Counted, props), second, 0, props
    )
    assert current is not None
    cache.store_entry(current)[0](get_redis())  # the step's sync form
    assert len(cache_keys(handle.instance_name)) == 1


# -- failure records, the process's state cache -------------------------------------------
Failing = Component("Failing", cache_ttl=0)


@Failing.update("boom")
def boom(state, props):
    raise RuntimeError(f"update {props['i']} fails")


def test_failure_records_keep_the_newest_1000_and_count_the_rest(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Failing("f1")
    for i in range(1005):
        handle._enqueue(Update("boom", {"i": i}, None))
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis()
    start_inprocess_worker()
    try:
        wait_for(lambda: int(client.hget(keys.meta, "applied") or 0) == 1005, 60, "1,005 failures")
        with pytest.raises(UpdateFailedError):
            handle.flush_update(timeout=30)
    finally:
        stop_inprocess_worker()
    assert client.zcard(keys.failed) == 1000
    assert int(client.zrange(keys.failed, 0, 0, withscores=True)[0][1]) == 6  # the newest kept
    assert int(client.hget(keys.meta, "failed_dropped") or 0) == 5


def test_the_state_cache_forgets_churn_of_evicted_instances() -> None:
    cache = StateCache(size=10)
    from motion.floor.props import State

    for i in range(1000):
        name = f"C__{i}"
        cache.observe(name, changed=True)
        cache.put(name, b"1", State(str(i), {}))
    assert len(cache._churning) <= 10
