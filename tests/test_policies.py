"""Cache, discard policies, coalescing, hooks: on a real redis-server and the in-process worker."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator

import pytest

from motion import Component, DiscardPolicy
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.inbox import Update
from motion.worker.inprocess import start_inprocess_worker, stop_inprocess_worker
from tests.support import age_entry

pytestmark = pytest.mark.integration

calls: dict[str, int] = {}


def counted(name: str) -> None:
    calls[name] = calls.get(name, 0) + 1


Cached = Component("Cached")  # default cache_ttl: one day


@Cached.init_state
def cached_setup() -> dict:
    return {"n": 0}


@Cached.serve("get")
def cached_get(state, props):
    counted("serve")
    return (state["n"], props["a"], props.get("b"))


@Cached.update("get")
def cached_bump(state, props):
    return {"n": state["n"] + 1}


Fresh = Component("Fresh")


@Fresh.init_state
def fresh_setup() -> dict:
    return {"newest": [], "recent": [], "batches": [], "all": []}


@Fresh.update("latest", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=3)
def keep_newest(state, props):
    return {"newest": [*state["newest"], props["i"]]}


@Fresh.update("recent", discard_policy=DiscardPolicy.SECONDS, discard_after=30)
def keep_recent(state, props):
    return {"recent": [*state["recent"], props["i"]]}


@Fresh.update("burst", batch=True)
def summarize(state, props_list):
    counted("batch")
    return {"batches": [*state["batches"], [p["i"] for p in props_list]]}


@Fresh.update("burst")
def per_item(state, props):
    return {"all": [*state["all"], props["i"]]}


Hooked = Component("Hooked")


@Hooked.init_state
def hooked_setup() -> dict:
    return {"rows": [], "db": sqlite3.connect(":memory:", check_same_thread=False)}


@Hooked.save_state
def save(state):
    return {"rows": state["rows"]}  # the connection cannot be pickled


@Hooked.load_state
def load(saved):
    return {**saved, "db": sqlite3.connect(":memory:", check_same_thread=False)}


@Hooked.serve("count")
def hooked_count(state, props):
    return (len(state["rows"]), type(state["db"]).__name__)


@Hooked.update("count")
def hooked_add(state, props):
    return {"rows": [*state["rows"], props["row"]]}


@pytest.fixture
def worker(redis_url: str) -> Iterator[None]:
    calls.clear()
    start_inprocess_worker()
    yield
    stop_inprocess_worker()


def queue_without_worker(handle, flow: str, items: range, age: float = 0.0) -> None:  # type: ignore[no-untyped-def]
    """Enqueue updates while no worker runs (``age`` s old), so a drain sees them all.

    Ages are measured by Redis' clock, which the enqueue script writes into the
    stored entry (``flow SOH ms NUL payload``): an older update is made by moving
    that time back, as if Redis had stored it ``age`` seconds ago."""
    client, inbox = get_redis(), K.InstanceKeys.of(handle.instance_name).inbox
    for i in items:
        seq = handle._enqueue(Update(flow, {"i": i}, None, time.time()))
        if age:
            age_entry(client, inbox, seq, age)


def test_cache_hits_ignore_key_order_and_a_commit_invalidates(redis_url) -> None:  # type: ignore[no-untyped-def]
    calls.clear()
    handle = Cached("c1")
    first = handle.run("get", {"a": 1, "b": 2})
    assert handle.run("get", {"b": 2, "a": 1}) == first  # canonical props: a hit
    assert calls["serve"] == 1
    assert handle.run("get", {"a": 1, "b": 3}) != first and calls["serve"] == 2
    handle.run("get", {"a": 1, "b": 2}, ignore_cache=True)
    assert calls["serve"] == 3
    seq = int(redis_server_meta(handle, "seq"))
    assert seq == 4  # updates are enqueued on hits too, as in Motion
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
        assert handle.run("get", {"a": 1, "b": 2}) == (4, 1, 2)  # new version: recomputed
        assert calls["serve"] == 4
    finally:
        stop_inprocess_worker()


def redis_server_meta(handle, field: str) -> bytes:  # type: ignore[no-untyped-def]
    from motion.floor.connection import get_redis

    return get_redis().hget(K.InstanceKeys.of(handle.instance_name).meta, field)


def test_force_refresh_applies_pending_updates_then_serves_fresh(worker) -> None:  # type: ignore[no-untyped-def]
    handle = Cached("c2")
    assert handle.run("get", {"a": 0}) == (0, 0, None)
    assert handle.run("get", {"a": 0}, force_refresh=True) == (1, 0, None)


def test_cache_ttl_zero_never_caches(redis_url) -> None:  # type: ignore[no-untyped-def]
    NoCache = Component("NoCache", cache_ttl=0)
    hits = []
    NoCache.serve("x")(lambda state, props: hits.append(1) or len(hits))
    handle = NoCache("n")
    assert [handle.run("x", {"k": 1}) for _ in range(3)] == [1, 2, 3]


def test_num_new_updates_runs_exactly_the_newest(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Fresh("f1")
    queue_without_worker(handle, "latest", range(10))
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
        assert handle.read_state("newest") == [7, 8, 9]
        stats = redis_stats()
        assert stats["discarded:latest"] == 7 and stats["applied:latest"] == 3
        assert "failed:latest" not in stats  # discards are not failures
    finally:
        stop_inprocess_worker()


def redis_stats() -> dict[str, int]:
    from motion.floor.connection import get_redis

    raw = get_redis().hgetall(K.stats("Fresh"))
    return {k.decode(): int(v) for k, v in raw.items()}


def test_seconds_policy_skips_updates_older_than_the_limit(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Fresh("f2")
    queue_without_worker(handle, "recent", range(5), age=60)
    queue_without_worker(handle, "recent", range(5, 7))
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
        assert handle.read_state("recent") == [5, 6]
        assert redis_stats()["discarded:recent"] == 5
    finally:
        stop_inprocess_worker()


def test_batch_ops_coalesce_a_burst_into_one_call_and_one_commit(redis_url) -> None:  # type: ignore[no-untyped-def]
    calls.clear()
    handle = Fresh("f3")
    handle.read_state("all")  # create it
    version = handle.get_version()
    queue_without_worker(handle, "burst", range(150))  # more than two read windows
    start_inprocess_worker()
    try:
        handle.flush_update(timeout=30)
    finally:
        stop_inprocess_worker()
    assert handle.read_state("batches") == [list(range(150))]
    assert calls["batch"] == 1
    assert handle.read_state("all") == list(range(150))  # the plain op still saw each one
    assert handle.get_version() == version + 1  # one state change for the burst
    assert redis_server_meta(handle, "applied") == b"150"
    assert redis_stats()["applied:burst"] == 150


def test_save_and_load_state_hooks(worker) -> None:  # type: ignore[no-untyped-def]
    handle = Hooked("h1")
    assert handle.run("count", {"row": "a"}, flush_update=True) == (0, "Connection")
    assert handle.run("count", {"row": "b"}, flush_update=True) == (1, "Connection")
    assert handle.read_state("rows") == ["a", "b"]


def test_async_update_ops_and_params_inside_ops(worker) -> None:  # type: ignore[no-untyped-def]
    Tuned = Component("Tuned", params={"step": 5})

    @Tuned.init_state
    def setup(start=0):
        return {"v": start, "who": None}

    @Tuned.update("inc")
    async def inc(state, props):
        return {"v": state["v"] + Tuned.params["step"], "who": state.instance_id}

    handle = Tuned("t1", init_state_params={"start": 10})
    handle.run("inc", flush_update=True)
    assert handle.read_state("v") == 15 and handle.read_state("who") == "t1"


def test_handles_are_safe_to_share_between_threads(worker) -> None:  # type: ignore[no-untyped-def]
    handle = Fresh("shared")
    errors: list[BaseException] = []

    def work(offset: int) -> None:
        try:
            for i in range(20):
                handle.run("burst", {"i": offset + i})
        except BaseException as exc:  # reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k * 100,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handle.flush_update(timeout=30)
    assert not errors
    assert sorted(handle.read_state("all")) == sorted(
        k * 100 + i for k in range(4) for i in range(20)
    )
