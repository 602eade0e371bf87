"""The update engine end to end: real redis-server, real Celery worker processes."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from motion import UpdateFailedError
from motion.floor import keys as K
from tests.support import (
    COMPONENTS,
    ReplyDropper,
    assert_applied_in_order,
    motion_env,
    run_producers,
    wait_for,
)

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


def assert_drained(client, name: str, count: int) -> None:  # type: ignore[no-untyped-def]
    """Every update 1..count applied, the inbox empty, the instance not pending."""
    keys = K.InstanceKeys.of(name)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
    assert int(meta["seq"]) == count
    assert int(meta["applied"]) == count
    assert client.hlen(keys.inbox) == 0
    # a hot instance's drain keeps the lease up to MOTION_LINGER_MS after its last
    # commit (for a next update); it leaves the pending index when it releases
    wait_for(lambda: client.zscore(K.PENDING, name) is None, 10, f"{name} to leave pending")


def test_four_producers_two_workers_apply_every_update_once_in_order(
    redis_url, redis_server, start_worker
):  # type: ignore[no-untyped-def]
    start_worker(["ledger"], pool="prefork", concurrency=2, name="a")
    start_worker(["ledger"], pool="prefork", concurrency=2, name="b")
    instances = [f"order-{i}" for i in range(5)]
    env = motion_env(redis_url)
    run_producers(env, instances, 250)
    for instance in instances:
        Ledger(instance).flush_update(timeout=60)
    client = redis_server.client()
    total = 0
    for instance in instances:
        handle = Ledger(instance)
        seqs, items = handle.read_state("seqs"), handle.read_state("items")
        assert_applied_in_order(seqs, items, 200, instance)
        assert_drained(client, handle.instance_name, 200)
        total += len(seqs)
    assert total == 1000


def test_worker_killed_mid_update_loses_and_doubles_nothing(
    redis_url, redis_server, start_worker, tmp_path: Path
):  # type: ignore[no-untyped-def]
    worker = start_worker(["ledger"], pool="prefork", concurrency=1, name="doomed")
    handle = Ledger("crash")
    marker = tmp_path / "running"
    handle.run("slow", {"item": 0, "sleep": 30, "marker": str(marker)})
    for i in range(1, 6):
        handle.run("add", {"item": i})
    wait_for(marker.exists, 30, "the slow update op to start")
    worker.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    client = redis_server.client()
    start_worker(
        ["ledger"], pool="prefork", concurrency=1, name="rescuer", env={"LEDGER_SLOW_CAP": "0.1"}
    )
    handle.flush_update(timeout=60)
    recovery = time.monotonic() - killed_at
    assert handle.read_state("seqs") == [1, 2, 3, 4, 5, 6]
    assert handle.read_state("items") == [0, 1, 2, 3, 4, 5]
    assert_drained(client, handle.instance_name, 6)
    assert int(client.hget(K.stats("Ledger"), "takeovers") or 0) == 1
    # lease 3 s + one sweep 1 s + worker start-up; generous for a loaded 2-core machine
    assert recovery < 3 + 1 + 10, f"recovery took {recovery:.1f}s"


def test_failed_update_leaves_state_unchanged_and_is_raised_by_flush(
    redis_url, redis_server, start_worker
):  # type: ignore[no-untyped-def]
    start_worker(["ledger"], pool="solo", concurrency=1)
    handle = Ledger("fail")
    handle.run("flaky", {"item": "a"}, flush_update=True)
    version = handle.get_version()
    handle.run("flaky", {"item": "b", "fail": True})
    handle.run("flaky", {"item": "c"})
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=30)
    [failure] = raised.value.failures
    assert failure.seq == 2 and failure.flow == "flaky" and failure.op == "flaky"
    assert "refusing item b" in str(raised.value) and "update #2" in str(raised.value)
    assert handle.read_state("items") == ["a", "c"]
    assert handle.get_version() == version + 1  # only "c" changed the state
    stats = redis_server.client().hgetall(K.stats("Ledger"))
    assert int(stats[b"failed:flaky"]) == 1 and int(stats[b"applied:flaky"]) == 2
    handle.flush_update(timeout=5)  # reported once, not again
    assert_drained(redis_server.client(), handle.instance_name, 3)


@pytest.mark.parametrize("pool", ["threads", "solo"])
def test_any_pool_applies_updates(redis_url, start_worker, pool):  # type: ignore[no-untyped-def]
    start_worker(["ledger"], pool=pool, concurrency=4)
    handles = [Ledger(f"{pool}-{i}") for i in range(4)]
    for n in range(20):
        for handle in handles:
            handle.run("add", {"item": n})
    for handle in handles:
        handle.flush_update(timeout=30)
        assert handle.read_state("items") == list(range(20))


def test_workers_with_different_code_share_redis_and_take_only_their_updates(
    redis_url, redis_server, start_worker
):  # type: ignore[no-untyped-def]
    """Each worker consumes the queues of the components its modules define, so a
    wake-up never lands on a worker that cannot apply it; an update whose code no
    running worker has waits in the inbox until one starts."""
    from producer_free import Other

    stranger = start_worker(["producer_free"], pool="solo", concurrency=1, name="stranger")
    handle, other = Ledger("orphan"), Other("neighbour")
    for n in range(3):
        handle.run("add", {"item": n})
        other.run("note", {"n": n})
    other.flush_update(timeout=30)
    assert other.read_state("seen") == [0, 1, 2]
    keys = K.InstanceKeys.of(handle.instance_name)
    client = redis_server.client()
    assert client.hlen(keys.inbox) == 3, "Ledger's updates wait for a worker with its code"
    assert client.zscore(K.PENDING, handle.instance_name) is not None
    start_worker(["ledger"], pool="solo", concurrency=1, name="knower")
    handle.flush_update(timeout=30)
    assert handle.read_state("items") == [0, 1, 2]
    for n in range(3, 5):
        handle.run("add", {"item": n})
        other.run("note", {"n": n})
    handle.flush_update(timeout=30)
    other.flush_update(timeout=30)
    assert handle.read_state("items") == [0, 1, 2, 3, 4]
    assert other.read_state("seen") == [0, 1, 2, 3, 4]
    assert "UnknownComponentError" not in stranger.log.read_text()
    assert "Ledger" not in stranger.log.read_text()


def test_a_separate_broker_gets_wakeups_through_celery(redis_url, start_worker):  # type: ignore[no-untyped-def]
    broker = redis_url.rsplit("/", 1)[0] + "/1"  # another database: not the state Redis
    os.environ["MOTION_BROKER_URL"] = broker
    try:
        from tests.conftest import reset_motion

        reset_motion()
        start_worker(["ledger"], pool="solo", env={"MOTION_BROKER_URL": broker})
        handle = Ledger("elsewhere")
        for i in range(3):
            handle.run("add", {"item": i})
        handle.flush_update(timeout=30)
        assert handle.read_state("items") == [0, 1, 2]
    finally:
        del os.environ["MOTION_BROKER_URL"]


def test_a_lost_enqueue_reply_still_enqueues_once(redis_url, redis_server, monkeypatch):  # type: ignore[no-untyped-def]
    """The connection drops after Redis ran the enqueue but before its reply arrived;
    the client re-sends the script, and its token makes the second run a no-op."""
    from tests.conftest import reset_motion

    proxy = ReplyDropper(redis_server.port)
    try:
        monkeypatch.setenv("MOTION_REDIS_URL", f"redis://127.0.0.1:{proxy.port}/0")
        reset_motion()
        handle = Ledger("retried")
        assert handle.run("slow", {"item": "first"}) is None  # creates it, loads the script
        proxy.drop_next.set()  # the next reply (the enqueue's) never arrives
        handle.run("slow", {"item": "second"})
        assert proxy.dropped == 1
        meta = K.InstanceKeys.of(handle.instance_name).meta
        assert int(redis_server.client().hget(meta, "seq")) == 2, "one run() enqueued twice"
    finally:
        proxy.close()


def test_a_lost_commit_reply_still_reports_and_notifies_what_it_committed(redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    """The connection drops after Redis ran a drain's commit but before its reply came,
    and the client sends it again (as the fast lane falls back to redis-py): the second
    is refused, yet the drain's report has the updates' seqs (Flower), the failure the
    commit recorded reaches ``on_update_failed`` once, and the drain is not taken for
    one that lost its lease."""
    from motion.floor import scripts
    from motion.floor.connection import get_redis
    from motion.worker import engine

    handle = Ledger("lost-commit")
    handle.run("add", {"item": "a"})
    handle.run("flaky", {"item": "b", "fail": True})
    failed: list[int] = []
    monkeypatch.setattr(Ledger, "on_update_failed", lambda record: failed.append(record.seq))
    commit_sha = scripts.get("commit").sha
    get_redis().script_load(scripts.get("commit").source)  # an EVALSHA that runs at once
    fast_command = scripts.fast_command
    resent: list[object] = []

    def reply_lost(client, *args):  # type: ignore[no-untyped-def]
        reply = fast_command(client, *args)
        if args[:2] != ("EVALSHA", commit_sha):
            return reply
        resent.append(client.execute_command(*args))  # the first reply never came
        return resent[-1]

    monkeypatch.setattr(scripts, "fast_command", reply_lost)
    report = engine.drain(Ledger, handle.instance_id)
    assert resent and resent[0] in (-1, -2), resent  # the re-sent commit was refused
    assert handle.read_state("seqs") == [1]
    assert report.skipped is None, report.skipped
    assert report.summary() == "1-2, 1 failed", report.summary()
    assert failed == [2]


def test_a_lost_reply_of_a_commit_with_more_to_do_goes_on_with_the_next_window(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """As above, for a commit that kept the lease (more updates waited): the refused
    re-send is taken for what it was, and the drain goes on to the next updates."""
    from motion.floor import scripts
    from motion.floor.connection import get_redis
    from motion.worker import engine

    monkeypatch.setattr(engine, "WINDOW", 1)  # one update per commit
    handle = Ledger("lost-middle")
    for item in "abc":
        handle.run("add", {"item": item})
    commit_sha = scripts.get("commit").sha
    get_redis().script_load(scripts.get("commit").source)
    fast_command = scripts.fast_command
    resent: list[object] = []

    def first_reply_lost(client, *args):  # type: ignore[no-untyped-def]
        reply = fast_command(client, *args)
        if args[:2] != ("EVALSHA", commit_sha) or resent:
            return reply
        resent.append(client.execute_command(*args))
        return resent[-1]

    monkeypatch.setattr(scripts, "fast_command", first_reply_lost)
    report = engine.drain(Ledger, handle.instance_id)
    assert resent == [-2]  # refused: a duplicate of the commit that ran
    assert handle.read_state("seqs") == [1, 2, 3]
    assert report.summary() == "1-3", report.summary()
