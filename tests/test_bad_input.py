"""Bad input: each mistake gets an error that says what to fix, and nothing accepted is lost.

Callers' mistakes (unpicklable values, oversized values, unknown flows, wrong Redis
URLs) fail at the call, before anything is enqueued. Mistakes found on a worker
(an op returning a non-dict, an oversized state value, a corrupt inbox entry, a
malformed task) are recorded as failures of that one update, and the updates
after it still apply.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import cloudpickle
import pytest

from motion import (
    ConfigurationError,
    ConnectionFailedError,
    SerializationError,
    UnknownFlowError,
    UpdateFailedError,
)
from motion.errors import StateTooLargeError
from motion.floor import celery_app, scripts, wakeup
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.inbox import ALL_FLOWS, Update, encode, enqueue_call, parse_failures
from motion.tools import admin
from tests.conftest import reset_motion
from tests.support import COMPONENTS, RedisServer, Worker, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from battery_inputs import BadInput  # noqa: E402
from ledger import Ledger  # noqa: E402

LIMIT = 20_000  # MOTION_MAX_VALUE_BYTES for the caller and the worker here


@pytest.fixture(scope="module")
def worker(redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    """One worker for the module: it knows BadInput (not Ledger); tests flush the database."""
    env = {
        "MOTION_LEASE_SECONDS": "3",
        "MOTION_SWEEP_SECONDS": "1",
        "MOTION_MAX_VALUE_BYTES": str(LIMIT),
    }
    logs = tmp_path_factory.mktemp("bad-input-logs")
    started = Worker(redis_server.url, ["battery_inputs"], logs, concurrency=1, env=env).start()
    yield started
    started.kill()


@pytest.fixture
def url(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The test's Redis, with this process's value limit matching the worker's."""
    monkeypatch.setenv("MOTION_MAX_VALUE_BYTES", str(LIMIT))
    reset_motion()
    return redis_url


def snapshot(name: str) -> tuple[object, ...]:
    """Everything an enqueue could touch for ``name``."""
    client, keys = get_redis(), K.InstanceKeys.of(name)
    return (
        client.hgetall(keys.meta),
        client.hgetall(keys.inbox),
        client.zrange(K.PENDING, 0, -1),
        sum(client.llen(q) for q in celery_app.get_app().amqp.queues),
    )


# -- caller-side mistakes: refused at the call, nothing enqueued ---------------------


def test_unpicklable_props_fail_at_enqueue_and_enqueue_nothing(url: str) -> None:
    handle = BadInput("props")
    with pytest.raises(SerializationError) as raised:
        handle.run("ok", {"lock": threading.Lock()})
    assert isinstance(raised.value, TypeError)  # Motion users' except clauses still work
    message = str(raised.value)
    assert "flow 'ok'" in message and "BadInput__props" in message
    assert "picklable" in message, "the message should say what to do"
    meta, inbox, pending, queued = snapshot(handle.instance_name)
    assert meta[b"seq"] == b"0" and inbox == {} and pending == [] and queued == 0


def test_unpicklable_serve_result_fails_at_enqueue(url: str) -> None:
    handle = BadInput("result")
    with pytest.raises(SerializationError, match="serve result of flow 'lock'"):
        handle.run("lock")
    meta, inbox, pending, queued = snapshot(handle.instance_name)
    assert meta[b"seq"] == b"0" and inbox == {} and pending == [] and queued == 0


def test_props_over_the_size_limit_fail_at_enqueue(url: str) -> None:
    handle = BadInput("huge-props")
    handle.run("ok", {"x": 1})
    before = snapshot(handle.instance_name)
    with pytest.raises(StateTooLargeError) as raised:
        handle.run("ok", {"x": "y" * (2 * LIMIT)})
    assert "MOTION_MAX_VALUE_BYTES" in str(raised.value) and f"{LIMIT:,}" in str(raised.value)
    assert isinstance(raised.value, ValueError)
    assert snapshot(handle.instance_name) == before


def test_unknown_flow_is_a_key_error_naming_the_flows(url: str) -> None:
    handle = BadInput("flows")
    with pytest.raises(KeyError) as raised:
        handle.run("nope")
    assert isinstance(raised.value, UnknownFlowError)
    assert "'nope'" in str(raised.value) and "'ok'" in str(raised.value)
    with pytest.raises(UnknownFlowError):
        handle.flush_update("nope")
    assert snapshot(handle.instance_name)[0][b"seq"] == b"0"  # nothing enqueued


def test_wrong_password_names_the_redacted_url(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(tmp_path / "auth", password="right-horse-battery").start()
    try:
        for url, says in [
            (f"redis://:wrong-staple@127.0.0.1:{server.port}/0", "refused the credentials"),
            (f"redis://127.0.0.1:{server.port}/0", "refused"),  # no password at all
        ]:
            monkeypatch.setenv("MOTION_REDIS_URL", url)
            monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
            reset_motion()
            with pytest.raises(ConnectionFailedError) as raised:
                Ledger("auth").run("add", {"item": 1})
            message = str(raised.value)
            assert says in message, message
            assert f"127.0.0.1:{server.port}/0" in message
            assert "wrong-staple" not in message and "right-horse" not in message
            assert "MOTION_REDIS_URL" in message or "credentials" in message
    finally:
        server.stop()
        reset_motion()


def test_unreachable_or_malformed_url(monkeypatch: pytest.MonkeyPatch) -> None:
    from motion.floor.embedded import free_port

    port = free_port()  # nothing listens there
    monkeypatch.setenv("MOTION_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    reset_motion()
    try:
        with pytest.raises(ConnectionFailedError) as raised:
            Ledger("nowhere").run("add", {"item": 1})
        message = str(raised.value)
        assert f"redis://:***@127.0.0.1:{port}/0" in message and "hunter2" not in message
        assert "is it running" in message
        monkeypatch.setenv("MOTION_REDIS_URL", "http://127.0.0.1:6379/0")
        reset_motion()
        with pytest.raises(ConfigurationError, match="must start with redis://"):
            Ledger("nowhere").run("add", {"item": 1})
        for url, advice in (
            ("redis://127.0.0.1:notaport/0", "port must be a number"),
            ("redis://127.0.0.1:6379/abc", "database after the host must be a number"),
        ):
            monkeypatch.setenv("MOTION_REDIS_URL", url)
            reset_motion()
            with pytest.raises(ConfigurationError, match=advice):
                Ledger("nowhere").run("add", {"item": 1})
        monkeypatch.setenv("MOTION_REDIS_URL", f"redis://127.0.0.1:{port}/0?password=hunter2")
        reset_motion()
        with pytest.raises(ConnectionFailedError) as raised:
            Ledger("nowhere").run("add", {"item": 1})
        assert "hunter2" not in str(raised.value) and "password=***" in str(raised.value)
    finally:
        reset_motion()


# -- worker-side mistakes: recorded, the next updates still apply -------------------


def test_update_returning_a_non_dict_is_a_recorded_failure_naming_the_op(
    url: str, worker: Worker
) -> None:
    handle = BadInput("nondict")
    handle.run("ok")
    handle.run("nondict")
    handle.run("ok")
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=30)
    [failure] = raised.value.failures
    assert (failure.seq, failure.op, failure.error_type) == (
        2,
        "returns_a_list",
        "UpdateResultError",
    )
    assert "returned list" in failure.message and "return a dict" in failure.message
    assert handle.read_state("seqs") == [1, 3]


def test_state_value_over_the_limit_is_a_recorded_failure(url: str, worker: Worker) -> None:
    handle = BadInput("big")
    handle.run("big", {"size": LIMIT // 2})
    handle.run("big", {"size": LIMIT * 2})  # the worker refuses to store it
    handle.run("ok")
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=30)
    [failure] = raised.value.failures
    assert failure.seq == 2 and failure.error_type == "StateTooLargeError"
    assert "'blob'" in failure.message and "MOTION_MAX_VALUE_BYTES" in failure.message
    assert handle.read_state("seqs") == [1, 3]
    assert len(handle.read_state("blob")) == LIMIT // 2  # the state kept the last good value


def test_corrupt_inbox_entries_are_recorded_and_later_updates_apply(
    url: str, worker: Worker
) -> None:
    handle = BadInput("corrupt")
    handle.run("ok")
    handle.flush_update(timeout=30)
    name = handle.instance_name
    handle.run("ok")  # seq 2; the failures below are read from seq 3 on
    keys = K.InstanceKeys.of(name)
    valid = encode(BadInput, name, Update("ok", {}))
    bad = [
        b"ok\x00not a motion payload",  # garbage after a flow header
        valid[: len(valid) // 2],  # truncated
        b"\xff\xfe no header at all",
        b"ok\x00M1U" + cloudpickle.dumps("a string, not an update"),  # wrong shape
    ]
    client = get_redis()
    for entry in bad:  # written as an enqueue would, seqs 3..6
        seq, wake = scripts.run(client, "enqueue", *enqueue_call(keys, entry, "ok"))[:2]
        if wake:
            celery_app.send_wakeup("BadInput", "corrupt", "ok", seq)
    handle.run("ok")  # seq 7
    handle.flush_update(timeout=30)  # its own updates applied; 3..6 are no handle's
    records = client.zrangebyscore(keys.failed, 0, "+inf")
    failures = {f.seq: f for f in parse_failures(name, records, ALL_FLOWS)}
    assert sorted(failures) == [3, 4, 5, 6]
    assert "no motion header" in failures[3].message
    assert failures[4].error_type in ("PayloadError", "SerializationError")
    assert "no flow header" in failures[5].message
    assert "unexpected shape" in failures[6].message
    assert handle.read_state("seqs") == [1, 2, 7]
    assert client.hlen(keys.inbox) == 0
    # the drain may linger (MOTION_LINGER_MS) before it releases and leaves pending
    wait_for(lambda: client.zscore(K.PENDING, name) is None, 10, "the instance to leave pending")


def test_malformed_task_messages_do_not_hurt_the_worker(url: str, worker: Worker) -> None:
    assert worker.proc is not None
    pid = worker.proc.pid
    app = celery_app.get_app()
    queue = celery_app.task_queue("motion.BadInput.0")  # a queue the worker consumes
    for args in ([1, 2], [], ["BadInput", ""], ["NoSuchComponent", "x"], [None, None, None]):
        app.send_task("motion.apply", args=args, queue=queue)
    app.send_task("motion.apply", kwargs={"surprise": 1}, queue=queue)
    log = worker.log
    wait_for(lambda: log.read_text().count("motion.apply takes") >= 3, 30, "bad args reported")
    wait_for(lambda: "NoSuchComponent" in log.read_text(), 30, "unknown component reported")
    handle = BadInput("after")
    handle.run("ok")
    handle.run("ok")
    handle.flush_update(timeout=30)  # the same worker still applies updates
    assert handle.read_state("seqs") == [1, 2]
    assert worker.proc.poll() is None and worker.proc.pid == pid


def test_update_for_a_component_no_worker_knows_waits_in_the_inbox(
    url: str,
    worker: Worker,
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    handle = Ledger("orphan")  # the module's worker has no Ledger code...
    handle.run("add", {"item": "kept"})
    name = handle.instance_name
    keys = K.InstanceKeys.of(name)
    client = get_redis()
    queue = wakeup.queue_for("Ledger", "orphan")
    # ...so it does not consume Ledger's queues: the wake-up waits there, for a worker
    # that has the code, instead of being taken (and failed) by one that has not
    wait_for(lambda: client.llen(queue) == 1, 10, "the wake-up in Ledger's queue")

    def woken() -> int:  # ms of the last wake-up ('r<ms>': put on its ready list then)
        return int((client.hget(keys.meta, "wake") or b"0").lstrip(b"r"))

    sweeps = woken()
    wait_for(
        lambda: woken() > sweeps,
        30,
        "the sweeper to re-send the wake-up (the instance stays pending)",
    )
    assert client.hlen(keys.inbox) == 1, "the update must stay in the inbox"
    assert client.zcard(keys.failed) == 0, "an update nobody could run is not a failure"
    assert client.zscore(K.PENDING, name) is not None
    assert "Ledger" not in worker.log.read_text()
    wait_for(lambda: admin.status(["Ledger"])[0].untaken == 1, 30, "status: no worker took it")
    start_worker(["ledger"], pool="solo", concurrency=1, name="knower")
    handle.flush_update(timeout=30)
    assert handle.read_state("items") == ["kept"] and handle.read_state("seqs") == [1]


def test_undecodable_broker_message_loses_no_update(url: str, start_worker) -> None:  # type: ignore[no-untyped-def]
    """A raw non-JSON message in a queue stops a Celery worker (kombu's Redis transport
    treats it as unrecoverable); the updates wait in Redis and a restarted worker applies
    them all. (Ledger: the only worker consuming its queues is the victim.)"""
    victim = start_worker(["ledger"], pool="solo", concurrency=1, name="victim")
    handle = Ledger("raw")
    handle.run("add", {"item": 1}, flush_update=True)
    get_redis().lpush("motion.Ledger.0", b"{not json at all")
    wait_for(lambda: "Unrecoverable error" in victim.log.read_text(), 30, "the worker to stop")
    assert victim.proc is not None and victim.proc.wait(30) != 0
    handle.run("add", {"item": 2})
    handle.run("add", {"item": 3})
    start_worker(["ledger"], pool="solo", concurrency=1, name="restarted")
    handle.flush_update(timeout=30)
    assert handle.read_state("seqs") == [1, 2, 3]
