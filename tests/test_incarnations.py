"""Incarnations never alias: nothing from an instance's earlier life is accepted by a later one.

An instance name can be cleared and created again, and Redis can lose data (a
restart without AOF). Each life of an instance has its own incarnation id, carried
by its fencing tokens, the version tags caches compare and the tickets a flush
waits on, so a zombie drain's commit, a stale copy or an old ticket of an earlier
life is refused by the next.
"""

from __future__ import annotations

import asyncio
import json
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from motion import (
    Component,
    InstanceClearedError,
    SerializationError,
    clear_instance,
    copy_db,
    inspect_state,
)
from motion.floor import keys as K
from motion.floor import scripts, store
from motion.floor.inbox import enqueue_call
from motion.worker import engine
from tests.support import ROOT, motion_env, wait_for

sys.path.insert(0, str(ROOT / "tests" / "components"))
from lifecycle_components import Tally

pytestmark = pytest.mark.integration


def _drain_reports(log: Path) -> list[str]:
    return re.findall(r"succeeded in [^\n]*", log.read_text())


def test_a_zombie_drain_cannot_commit_into_a_re_created_instance(  # type: ignore[no-untyped-def]
    redis_url, redis_server, start_worker, tmp_path: Path
) -> None:
    worker = start_worker(["lifecycle_components"], pool="threads", concurrency=4)
    client = redis_server.client()
    keys = K.InstanceKeys.of("Tally__z")
    old_gate, new_gate = tmp_path / "old-gate", tmp_path / "new-gate"
    Tally("z").run("add", {"by": 100, "label": "old", "gate": str(old_gate)})
    wait_for(lambda: client.exists(keys.lease), 30, "the first drain to hold the lease")
    assert clear_instance("Tally__z")  # the first drain is mid-update: a zombie now
    handle = Tally("z")
    handle.run("add", {"by": 1, "label": "new", "gate": str(new_gate)})
    wait_for(lambda: client.exists(keys.lease), 30, "the second drain to hold the lease")
    old_gate.touch()  # the zombie finishes its op and tries to commit
    wait_for(
        lambda: any("lease lost" in r or "'applied': 1" in r for r in _drain_reports(worker.log)),
        30,
        "the zombie drain to try its commit",
    )
    new_gate.touch()
    handle.flush_update(timeout=30)
    assert handle.read_state("log") == ["new"]
    assert handle.read_state("n") == 1


def _other_process(url: str, code: str) -> None:
    """Run ``code`` in a fresh Python process (its own caches) on the test's Redis."""
    prelude = "from lifecycle_components import Tally\n"
    done = subprocess.run(
        [sys.executable, "-c", prelude + code],
        env=motion_env(url),
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def _old_life_at_version_4(handle: Any) -> None:
    for _ in range(3):
        handle.run("add", {"by": 100, "label": "old"}, flush_update=True)
    assert (handle.get_version(), handle.read_state("n")) == (4, 300)


def test_a_caller_s_copy_of_an_earlier_incarnation_is_not_served(  # type: ignore[no-untyped-def]
    redis_url, redis_server, start_worker
) -> None:
    start_worker(["lifecycle_components"], pool="threads", concurrency=2)
    handle = Tally("s")
    _old_life_at_version_4(handle)  # this process keeps a copy at version 4
    redis_server.client().flushall()  # Redis restarted without AOF: the instance is gone
    # another process creates it again and brings it to version 4 too
    _other_process(
        redis_url,
        "h = Tally('s')\n"
        "for _ in range(3):\n"
        "    h.run('add', {'by': 1, 'label': 'new'}, flush_update=True)\n"
        "assert h.get_version() == 4\n",
    )
    assert handle.read_state("n") == 3
    assert handle.read_state("log") == ["new"] * 3


def test_a_worker_s_copy_of_an_earlier_incarnation_is_not_built_on(  # type: ignore[no-untyped-def]
    redis_url, redis_server, start_worker
) -> None:
    worker = start_worker(["lifecycle_components"], pool="threads", concurrency=2)
    handle = Tally("w")
    _old_life_at_version_4(handle)  # the worker keeps a copy at version 4
    worker.kill(signal.SIGSTOP)  # it sees nothing of what follows
    try:
        client = redis_server.client()
        assert clear_instance("Tally__w")
        fresh = Tally("w")
        for _ in range(3):  # applied here, by this process, not by the paused worker
            fresh.run("add", {"by": 1, "label": "new"})
            engine.drain(Tally, "w")
        assert int(client.hget(K.InstanceKeys.of("Tally__w").meta, "version")) == 4
    finally:
        worker.kill(signal.SIGCONT)
    fresh.run("add", {"by": 1, "label": "new"}, flush_update=True)  # the worker drains it
    assert fresh.read_state("n") == 4
    assert fresh.read_state("log") == ["new"] * 4


def test_a_flush_never_takes_a_later_incarnation_s_update_for_its_own(  # type: ignore[no-untyped-def]
    redis_url, redis_server
) -> None:
    handle = Tally("t")
    handle.run("add", {"by": 1, "label": "old"})  # seq 1 of the first life (no worker here)
    assert clear_instance("Tally__t")  # its pending update is dropped with it
    other = Tally("t")
    other.run("add", {"by": 5, "label": "new"})  # seq 1 of the second life
    engine.drain(Tally, "t")
    with pytest.raises(InstanceClearedError, match="cleared"):
        handle.flush_update(timeout=10)
    assert other.read_state("log") == ["new"]


# -- signatures bind a value to its instance, field and incarnation -----------------------


@pytest.fixture
def signing(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.conftest import reset_motion

    monkeypatch.setenv("MOTION_SIGNING_KEY", "lifecycle-signing-key-of-32-bytes!")
    reset_motion()


def _reread(handle: Any, key: str) -> Any:
    store.STATE_CACHE.clear()  # a process without a copy reads the value from Redis
    return handle.read_state(key)


def test_a_signed_value_copied_to_another_instance_or_field_is_refused(  # type: ignore[no-untyped-def]
    signing, redis_server
) -> None:
    client = redis_server.client()
    a, b = Tally("a"), Tally("b")
    for handle, label in ((a, "alpha"), (b, "beta")):
        handle.run("add", {"by": 1, "label": label})
        engine.drain(Tally, handle.instance_id)
    ka, kb = K.InstanceKeys.of("Tally__a"), K.InstanceKeys.of("Tally__b")
    stolen = client.hget(ka.state, "log")
    client.hset(kb.state, "log", stolen)  # another instance
    with pytest.raises(SerializationError, match="another instance, field or incarnation"):
        inspect_state("Tally__b")
    with pytest.raises(SerializationError, match="refused"):
        _reread(b, "log")
    client.hset(ka.state, "n", stolen)  # another field of the same instance
    with pytest.raises(SerializationError, match="refused"):
        _reread(a, "n")
    assert client.hget(ka.state, "log") == stolen  # where it belongs, it still verifies
    client.hset(ka.state, "n", client.hget(kb.state, "n"))
    client.hset(kb.state, "log", stolen)


def test_a_signed_value_of_an_earlier_incarnation_is_refused(signing, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    keys = K.InstanceKeys.of("Tally__c")
    handle = Tally("c")
    handle.run("add", {"by": 7, "label": "first life"})
    engine.drain(Tally, "c")
    old = client.hget(keys.state, "log")
    assert clear_instance("Tally__c")
    fresh = Tally("c")
    assert fresh.read_state("log") == []
    client.hset(keys.state, "log", old)  # replayed into the new life
    with pytest.raises(SerializationError, match="refused"):
        inspect_state("Tally__c")
    with pytest.raises(SerializationError, match="refused"):
        _reread(fresh, "log")


def test_a_signed_payload_copied_into_another_inbox_is_refused(signing, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    a, b = Tally("pa"), Tally("pb")
    a.run("add", {"by": 1000, "label": "for pa only"})  # seq 1 of pa, not applied yet
    entry = client.hget(K.InstanceKeys.of("Tally__pa").inbox, 1)
    scripts.run(client, "enqueue", *enqueue_call(K.InstanceKeys.of("Tally__pb"), entry, "add"))
    engine.drain(Tally, "pb")
    records = client.zrange(K.InstanceKeys.of("Tally__pb").failed, 0, -1)
    assert [json.loads(r)["error_type"] for r in records] == ["PayloadError"]
    assert "another instance" in json.loads(records[0])["message"]
    assert b.read_state("n") == 0
    engine.drain(Tally, "pa")
    a.flush_update(timeout=10)
    assert a.read_state("log") == ["for pa only"]


Echo = Component("EchoCache", cache_ttl=60)


@Echo.init_state
def echo_setup(who: str = "") -> dict:
    return {"who": who}


@Echo.serve("hi")
def hi(state, props):
    return f"hi from {state['who']}"


def test_a_signed_cache_entry_copied_to_another_instance_is_a_miss(signing, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    a, b = Echo("ea", {"who": "a"}), Echo("eb", {"who": "b"})
    assert a.run("hi", {"x": 1}) == "hi from a"
    assert b.run("hi", {"x": 1}) == "hi from b"
    [a_value] = client.hvals("motion:{EchoCache__ea}:cache")
    [b_field] = client.hkeys("motion:{EchoCache__eb}:cache")
    # a's signed answer, planted where b's belongs
    client.hset("motion:{EchoCache__eb}:cache", b_field, a_value)
    assert b.run("hi", {"x": 1}) == "hi from b"


def test_a_zombie_drain_cannot_commit_into_an_instance_copy_db_replaced(  # type: ignore[no-untyped-def]
    redis_url, redis_server, start_worker, tmp_path: Path
) -> None:
    source = redis_url.rsplit("/", 1)[0] + "/1"  # another database of the same server
    redis.Redis.from_url(source).flushdb()
    _other_process(source, "Tally('x').read_state('n')\n")  # the life copy_db brings: n = 0
    worker = start_worker(["lifecycle_components"], pool="threads", concurrency=2)
    client = redis_server.client()
    keys = K.InstanceKeys.of("Tally__x")
    gate = tmp_path / "gate"
    Tally("x").run("add", {"by": 100, "label": "old", "gate": str(gate)})
    wait_for(lambda: client.exists(keys.lease), 30, "the drain to hold the lease")
    asyncio.run(copy_db(source, redis_url))  # the instance now holds the copied life
    gate.touch()
    wait_for(
        lambda: any("lease lost" in r or "'applied': 1" in r for r in _drain_reports(worker.log)),
        30,
        "the zombie drain to try its commit",
    )
    assert inspect_state("Tally__x") == {"n": 0, "log": []}


def test_a_flush_after_a_clear_reports_the_dropped_updates_once(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Tally("f")
    handle.run("add", {"by": 1, "label": "dropped"})  # no worker: it stays pending
    assert clear_instance("Tally__f")
    with pytest.raises(InstanceClearedError, match="#1"):
        handle.flush_update(timeout=10)  # the instance does not exist now
    handle.flush_update(timeout=10)  # reported once
    handle.run("add", {"by": 2, "label": "new life"})  # the next call creates it again
    engine.drain(Tally, "f")
    handle.flush_update(timeout=10)
    assert handle.read_state("log") == ["new life"]
