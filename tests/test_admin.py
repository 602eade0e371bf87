"""Operator utilities on a real redis-server: list, inspect, clear, migrate, copy, status, flush."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path

import pytest

from motion import (
    DefinitionError,
    FlushTimeoutError,
    InstanceNotFoundError,
    RedisParams,
    StateMigrator,
    UpdateFailedError,
    clear_instance,
    copy_db,
    get_instances,
    inspect_state,
)
from motion.define.definitions import _registry
from motion.floor import keys as K
from motion.floor import store
from motion.floor.connection import get_redis
from motion.floor.inbox import Update
from motion.tools import admin
from tests.support import COMPONENTS, age_entry, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402


def test_list_inspect_and_clear(redis_url, redis_server):  # type: ignore[no-untyped-def]
    client = redis_server.client()
    for i in range(30):
        Notes(f"user-{i:02}", {"owner": f"o{i}"}).read_state("owner")
    Notes("other-x").read_state("owner")
    assert get_instances("Notes") == sorted([f"user-{i:02}" for i in range(30)] + ["other-x"])
    assert get_instances(Notes) == get_instances("Notes")
    assert get_instances("Note") == []  # a prefix of another component's name
    assert inspect_state("Notes__user-03") == {"owner": "o3", "notes": []}

    handle = Notes("user-03")
    handle.run("add", {"text": "queued"})  # no worker: stays pending
    cached = f"{K.InstanceKeys.of('Notes__user-03').cache_prefix}peek:1:abc"
    client.set(cached, b"x")
    assert client.zscore(K.PENDING, "Notes__user-03") is not None
    assert store.STATE_CACHE.get("Notes__user-03") is not None

    assert clear_instance("Notes__user-03") is True
    assert client.zscore(K.PENDING, "Notes__user-03") is None
    assert not client.exists(cached, *K.InstanceKeys.of("Notes__user-03").all())
    assert store.STATE_CACHE.get("Notes__user-03") is None
    assert "user-03" not in get_instances("Notes")
    assert clear_instance("Notes__user-03") is False
    assert clear_instance("Notes__user-04") is True  # the neighbour is untouched until now
    assert len(get_instances("Notes")) == 29
    with pytest.raises(InstanceNotFoundError, match="motion list Notes"):
        inspect_state("Notes__user-03")
    with pytest.raises(ValueError, match="Component__instance_id"):
        clear_instance("no-separator")


def test_inspect_without_the_component_code(redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    Notes("plain", {"owner": "ann"}).read_state("owner")
    monkeypatch.delitem(_registry, "Notes")  # as in a process that never imported it
    assert inspect_state("Notes__plain") == {"owner": "ann", "notes": []}


def test_migrator_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="motion Component"):
        StateMigrator("Notes", lambda state: state)  # type: ignore[arg-type]
    with pytest.raises(DefinitionError, match="exactly one parameter"):
        StateMigrator(Notes, lambda state, extra: state)
    with pytest.raises(DefinitionError, match="exactly one parameter"):
        StateMigrator(Notes, lambda: {})
    StateMigrator(Notes, lambda s: s)  # Motion accepted any one parameter
    StateMigrator(Notes, lambda state, verbose=False: state)


def test_migration_is_ordered_with_pending_updates(redis_url, start_worker, tmp_path: Path):  # type: ignore[no-untyped-def]
    start_worker(["admin_components"], pool="threads", concurrency=4)
    gate = tmp_path / "open"
    first = Notes("first")
    first.run("gate", {"path": str(gate)})
    for text in "abc":
        first.run("add", {"text": text})
    for i in range(3):
        Notes(f"more-{i}").run("add", {"text": "x"}, flush_update=True)

    def shout(state):  # runs on the worker, on the state left by every earlier update
        return {**state, "notes": [n.upper() for n in state["notes"]], "migrated": True}

    results: list[admin.MigrationResult] = []
    migration = threading.Thread(
        target=lambda: results.extend(StateMigrator(Notes, shout).migrate())
    )
    migration.start()
    meta = K.InstanceKeys.of("Notes__first").meta
    client = get_redis()
    wait_for(lambda: int(client.hget(meta, "seq")) == 5, 10, "the migration to be enqueued")
    assert "migrated" not in inspect_state("Notes__first")  # held behind the gate
    first.run("add", {"text": "d"})  # enqueued after the migration: applied after it
    gate.touch()
    migration.join(30)
    assert sorted(r.instance_id for r in results) == ["first", "more-0", "more-1", "more-2"]
    assert all(r.exception is None for r in results), results
    first.flush_update(timeout=10)
    assert first.read_state("notes") == ["GATE", "A", "B", "C", "d"]
    assert first.read_state("migrated") is True
    assert Notes("more-1").read_state("notes") == ["X"]

    def broken(state):
        raise RuntimeError("cannot migrate this one")

    [failed, missing] = StateMigrator(Notes, broken).migrate(["Notes__more-0", "ghost"], 2, 10)
    assert isinstance(failed.exception, UpdateFailedError)
    assert "cannot migrate this one" in str(failed.exception)
    assert Notes("more-0").read_state("notes") == ["X"]  # a failed migration changes nothing
    assert missing.instance_id == "ghost"
    assert isinstance(missing.exception, InstanceNotFoundError)
    assert "ghost" not in get_instances("Notes")  # migrating does not create instances
    [renamed] = StateMigrator(Notes, lambda s: {"notes": s["notes"] * 2}).migrate(["more-2"])
    assert renamed.exception is None and Notes("more-2").read_state("notes") == ["X", "X"]
    assert Notes("more-2").read_state("owner") is None  # the returned dict is the whole state


def test_copy_db_copies_every_motion_key(redis_url, redis_server):  # type: ignore[no-untyped-def]
    for i in range(3):
        Notes(f"c{i}", {"owner": f"o{i}"}).run("add", {"text": "pending"})
    source = redis_server.client()
    source.set(f"{K.InstanceKeys.of('Notes__c0').cache_prefix}x", b"1", ex=500)
    source.set("not-motion", b"1")
    dest_url = redis_url.rsplit("/", 1)[0] + "/1"
    params = RedisParams(host="127.0.0.1", port=redis_server.port, db=0)
    copied = asyncio.run(copy_db(params, dest_url))
    dest = redis_server.client().connection_pool.connection_kwargs
    target = type(source)(host=dest["host"], port=dest["port"], db=1)
    motion_keys = sorted(source.scan_iter(match="motion:*"))
    assert copied == len(motion_keys) > 10
    assert sorted(target.scan_iter()) == motion_keys
    for key in motion_keys:
        assert target.dump(key) == source.dump(key)
    assert 400 < target.ttl(f"{K.InstanceKeys.of('Notes__c0').cache_prefix}x") <= 500
    with pytest.raises(ValueError, match="different"):
        asyncio.run(copy_db(redis_url, redis_url))


def test_status_and_flush(redis_url, start_worker):  # type: ignore[no-untyped-def]
    a, b = Notes("s-a"), Notes("s-b")
    seq = a._enqueue(Update("add", {"text": "old"}))
    age_entry(get_redis(), K.InstanceKeys.of(a.instance_name).inbox, seq, 120)  # Redis' clock
    a.run("add", {"text": "bad", "fail": True})
    b.run("add", {"text": "new"})
    [row] = admin.status()
    assert (row.component, row.pending_instances, row.pending_updates) == ("Notes", 2, 3)
    assert 119 < row.lag_seconds < 200  # from the oldest update's enqueue time
    with pytest.raises(FlushTimeoutError, match="not applied within"):
        admin.flush_instance("Notes__s-a", timeout=0.2)

    raised: list[BaseException] = []

    def flush_a() -> None:  # reads what is pending at once, well before the worker is up
        try:
            admin.flush_instance("Notes__s-a", timeout=30)
        except BaseException as exc:
            raised.append(exc)

    waiter = threading.Thread(target=flush_a)
    waiter.start()
    start_worker(["admin_components"], pool="solo", concurrency=1)
    assert admin.flush_instance("Notes__s-b", "add", timeout=30) == 1
    waiter.join(30)
    [error] = raised
    assert isinstance(error, UpdateFailedError) and "refusing note 'bad'" in str(error)
    assert [f.seq for f in error.failures] == [2]
    assert admin.flush_instance("Notes__s-a", timeout=1) == 2  # nothing pending: no failure
    [row] = admin.status(["Notes"])
    assert (row.pending_instances, row.pending_updates, row.lag_seconds) == (0, 0, 0.0)
    assert (row.applied, row.failed, row.discarded) == (2, 1, 0)
    assert row.flows["add"]["applied"] == 2 and row.flows["add"]["failed"] == 1
    assert admin.status(["Nothing"])[0].applied == 0
    with pytest.raises(InstanceNotFoundError):
        admin.flush_instance("Notes__nobody", timeout=1)
