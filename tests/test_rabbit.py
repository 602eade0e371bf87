"""motion with RabbitMQ as the broker (``MOTION_BROKER_URL=amqp://...``), state in Redis.

The contract subset of the default run on the amqp broker, with real Celery
worker subprocesses on the session's rabbitmq-server (:mod:`tests.brokers`):
per-instance order with several producers, instances and workers; an admin
operation (a state migration ordered with pending updates); one fault, a worker
SIGKILLed mid-update, with nothing lost or doubled; and a frozen broker, which must
not hold a caller. The long scenarios on amqp are in
``tests/battery/test_rabbit_battery.py`` (``-m battery``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion import StateMigrator, inspect_state
from motion.floor import keys as K
from motion.tools import admin
from tests.brokers import RabbitServer, clean_broker
from tests.conftest import reset_motion
from tests.support import (
    COMPONENTS,
    Worker,
    assert_applied_in_order,
    motion_env,
    run_producers,
    wait_for,
)

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402
from ledger import Ledger  # noqa: E402


@pytest.fixture
def amqp_url(
    redis_url: str, rabbit_server: RabbitServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """The session's RabbitMQ as this test's broker (no wake-up left from earlier tests)."""
    clean_broker(rabbit_server, ["Ledger", "Notes"])
    monkeypatch.setenv("MOTION_BROKER_URL", rabbit_server.url)
    reset_motion()
    yield rabbit_server.url


def on_amqp(worker: Worker, url: str, redis_client) -> None:  # type: ignore[no-untyped-def]
    """The worker consumed from RabbitMQ, and no wake-up went through a Redis list."""
    port = url.rsplit(":", 1)[1].split("/")[0]
    assert f"Connected to amqp://guest:**@127.0.0.1:{port}//" in worker.log.read_text()
    assert not list(redis_client.scan_iter("motion.*")), "a wake-up went to a Redis queue"


def test_updates_apply_in_order_across_instances_and_workers_on_amqp(
    amqp_url, redis_url, redis_server, start_worker
):  # type: ignore[no-untyped-def]
    broker = {"MOTION_BROKER_URL": amqp_url}
    workers = [
        start_worker(["ledger"], pool="prefork", concurrency=2, name=n, env=broker) for n in "ab"
    ]
    instances = [f"amqp-order-{i}" for i in range(6)]
    env = motion_env(redis_url, **broker)
    run_producers(env, instances, 90)
    for instance in instances:
        Ledger(instance).flush_update(timeout=60)
    client = redis_server.client()
    for instance in instances:
        handle = Ledger(instance)
        seqs, items = handle.read_state("seqs"), handle.read_state("items")
        assert_applied_in_order(seqs, items, 60, instance)
        meta = K.InstanceKeys.of(handle.instance_name).meta
        assert int(client.hget(meta, "applied")) == 60
    # (a drain that lingers after its last commit leaves the index when its linger ends)
    wait_for(lambda: client.zcard(K.PENDING) == 0, 10, "the pending index to empty")
    for worker in workers:
        on_amqp(worker, amqp_url, client)


def test_migration_is_ordered_with_pending_updates_on_amqp(
    amqp_url, redis_server, start_worker, tmp_path: Path
):  # type: ignore[no-untyped-def]
    worker = start_worker(
        ["admin_components"], pool="threads", concurrency=4, env={"MOTION_BROKER_URL": amqp_url}
    )
    gate = tmp_path / "open"
    first = Notes("first")
    first.run("gate", {"path": str(gate)})
    for text in "abc":
        first.run("add", {"text": text})
    Notes("other").run("add", {"text": "x"}, flush_update=True)

    def shout(state):  # type: ignore[no-untyped-def]
        return {**state, "notes": [n.upper() for n in state["notes"]], "migrated": True}

    results: list[admin.MigrationResult] = []
    migration = threading.Thread(
        target=lambda: results.extend(StateMigrator(Notes, shout).migrate())
    )
    migration.start()
    client = redis_server.client()
    meta = K.InstanceKeys.of("Notes__first").meta
    wait_for(lambda: int(client.hget(meta, "seq")) == 5, 20, "the migration to be enqueued")
    first.run("add", {"text": "d"})  # after the migration: applied after it
    gate.touch()
    migration.join(60)
    assert sorted(r.instance_id for r in results) == ["first", "other"]
    assert all(r.exception is None for r in results), results
    first.flush_update(timeout=30)
    assert first.read_state("notes") == ["GATE", "A", "B", "C", "d"]
    assert inspect_state("Notes__other") == {"owner": "nobody", "notes": ["X"], "migrated": True}
    [row] = admin.status(["Notes"])
    assert (row.pending_instances, row.pending_updates, row.failed) == (0, 0, 0)
    on_amqp(worker, amqp_url, client)


def test_worker_killed_mid_update_loses_and_doubles_nothing_on_amqp(
    amqp_url, redis_server, start_worker, tmp_path: Path
):  # type: ignore[no-untyped-def]
    broker = {"MOTION_BROKER_URL": amqp_url}
    doomed = start_worker(["ledger"], pool="prefork", concurrency=1, name="doomed", env=broker)
    handle = Ledger("amqp-crash")
    marker = tmp_path / "running"
    handle.run("slow", {"item": 0, "sleep": 30, "marker": str(marker)})
    for i in range(1, 6):
        handle.run("add", {"item": i})
    wait_for(marker.exists, 30, "the slow update op to start")
    doomed.kill(signal.SIGKILL)  # its wake-ups were unacknowledged: RabbitMQ requeues them
    killed_at = time.monotonic()
    client = redis_server.client()
    rescuer = start_worker(
        ["ledger"],
        pool="prefork",
        concurrency=1,
        name="rescuer",
        env={**broker, "LEDGER_SLOW_CAP": "0.1"},
    )
    handle.flush_update(timeout=60)
    recovery = time.monotonic() - killed_at
    assert handle.read_state("seqs") == [1, 2, 3, 4, 5, 6]
    assert handle.read_state("items") == [0, 1, 2, 3, 4, 5]
    keys = K.InstanceKeys.of(handle.instance_name)
    assert int(client.hget(keys.meta, "applied")) == 6
    assert client.hlen(keys.inbox) == 0 and client.zscore(K.PENDING, handle.instance_name) is None
    assert int(client.hget(K.stats("Ledger"), "takeovers") or 0) == 1
    # lease 3 s + one sweep 1 s + worker start-up; generous for a loaded 2-core machine
    assert recovery < 3 + 1 + 15, f"recovery took {recovery:.1f}s"
    on_amqp(rescuer, amqp_url, client)


#: a caller: one update (connected, its queue declared), then, once told, one update
#: per instance on queues it has not declared, timing each ``run()``
FROZEN_CALLER = """
import json, pathlib, sys, time
from ledger import Ledger
folder = pathlib.Path(sys.argv[1])
Ledger("frozen-0").run("add", {"item": 0})
(folder / "ready").touch()
while not (folder / "go").exists():
    time.sleep(0.01)
took = []
for instance in sys.argv[2:]:
    started = time.monotonic()
    Ledger(instance).run("add", {"item": 1})
    took.append(time.monotonic() - started)
(folder / "took.json").write_text(json.dumps(took))
"""


def test_a_frozen_broker_fails_the_wakeup_send_instead_of_blocking_the_caller(
    amqp_url, redis_url, rabbit_server, redis_server, start_worker, tmp_path: Path
):  # type: ignore[no-untyped-def]
    """A RabbitMQ that accepts connections but never answers (frozen, overloaded, a
    half-open link) must not hold ``run()``: the update is in the inbox already, so the
    send fails within the socket timeouts and the sweeper re-sends the wake-up."""
    from motion.floor.wakeup import queue_for

    first = queue_for("Ledger", "frozen-0")
    others = [i for i in (f"frozen-{n}" for n in range(1, 40)) if queue_for("Ledger", i) != first]
    others = others[:1]  # on a queue the caller has not declared yet
    beam = rabbit_server.beam_pid()
    assert beam is not None
    # short timeouts, so the test is quick: the mechanism is the same at the defaults
    timeouts = {"MOTION_REDIS_SOCKET_TIMEOUT": "1", "MOTION_REDIS_CONNECT_TIMEOUT": "1"}
    env = motion_env(redis_url, MOTION_BROKER_URL=amqp_url, **timeouts)
    args = [sys.executable, "-c", FROZEN_CALLER, str(tmp_path), *others]
    caller = subprocess.Popen(args, env=env, cwd=COMPONENTS)
    try:
        wait_for(lambda: (tmp_path / "ready").exists(), 30, "the caller's first update")
        os.kill(beam, signal.SIGSTOP)
        try:
            (tmp_path / "go").touch()
            try:
                caller.wait(60)
            except subprocess.TimeoutExpired:
                raise AssertionError("run() blocked on a frozen broker") from None
        finally:
            os.kill(beam, signal.SIGCONT)
    finally:
        if caller.poll() is None:
            caller.kill()
            caller.wait(10)
    assert caller.returncode == 0
    took = json.loads((tmp_path / "took.json").read_text())
    assert max(took) < 15, f"run() took {took} s on a frozen broker"
    client = redis_server.client()
    for instance in others:  # every update was enqueued before its send failed
        meta = K.InstanceKeys.of(K.instance_name("Ledger", instance)).meta
        assert int(client.hget(meta, "seq")) == 1
    start_worker(["ledger"], pool="threads", concurrency=2, env={"MOTION_BROKER_URL": amqp_url})
    for instance in ["frozen-0", *others]:
        Ledger(instance).flush_update(timeout=60)  # the sweeper re-sent the lost wake-ups
        assert Ledger(instance).read_state("seqs") == [1]
