"""Past one Redis: instances spread over shards by a hash of their name.

Two redis-servers, a worker per shard (each with ``MOTION_REDIS_URL`` = its shard),
and a caller with ``MOTION_REDIS_SHARDS`` listing both: every instance lives, is
updated and is listed on exactly one shard, and the admin utilities see them all.
"""

from __future__ import annotations

import sys
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion import ConfigurationError, get_instances
from motion.floor import keys as K
from motion.tools import producer
from motion.tools.admin import clear_instance, status
from tests.conftest import reset_motion
from tests.support import COMPONENTS, RedisServer, Worker, clear_motion_env

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


@pytest.fixture
def shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[RedisServer]]:
    servers = [RedisServer(tmp_path / f"shard-{i}").start() for i in range(2)]
    workers = [
        Worker(s.url, ["ledger"], tmp_path / "logs", pool="solo", name=f"shard{i}").start()
        for i, s in enumerate(servers)
    ]
    clear_motion_env(monkeypatch)
    monkeypatch.setenv("MOTION_REDIS_SHARDS", " ".join(s.url for s in servers))
    reset_motion()
    yield servers
    reset_motion()
    for worker in workers:
        worker.kill()
    for server in servers:
        server.stop()


def test_instances_live_and_are_updated_on_their_own_shard(shards: list[RedisServer]) -> None:
    ids = [f"user-{i}" for i in range(12)]
    for round_ in range(3):
        for iid in ids:
            Ledger(iid).run("add", {"item": round_})
    for iid in ids:
        handle = Ledger(iid)
        handle.flush_update(timeout=30)
        assert handle.read_state("items") == [0, 1, 2]
    homes = {0: 0, 1: 0}
    for iid in ids:
        name = K.instance_name("Ledger", iid)
        home = zlib.crc32(name.encode()) % 2
        present = [bool(s.client().exists(K.InstanceKeys.of(name).meta)) for s in shards]
        assert present == [home == 0, home == 1], f"{name} is not on exactly its shard"
        homes[home] += 1
    assert homes[0] and homes[1], "the hash should spread 12 instances over both shards"
    assert get_instances("Ledger") == sorted(ids)  # listed across shards
    (ledger,) = status(["Ledger"])
    assert ledger.applied == 36 and ledger.pending_instances == 0
    # a producer without the component's code routes the same way
    assert producer.enqueue("Ledger", "user-0", "add", {"item": 3}) == 4
    Ledger("user-0").flush_update(timeout=30)
    assert Ledger("user-0").read_state("items") == [0, 1, 2, 3]
    assert clear_instance("Ledger__user-0") and "user-0" not in get_instances("Ledger")


def test_shards_refuse_a_shared_broker_and_an_inprocess_worker(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MOTION_REDIS_SHARDS", "redis://127.0.0.1:1/0 redis://127.0.0.1:2/0")
    monkeypatch.setenv("MOTION_BROKER_URL", "redis://127.0.0.1:3/0")
    reset_motion()
    try:
        with pytest.raises(ConfigurationError, match="each shard is its own broker"):
            Ledger("x").run("add", {"item": 1})
        monkeypatch.delenv("MOTION_BROKER_URL")
        monkeypatch.setenv("MOTION_INPROCESS_WORKER", "1")
        reset_motion()
        from motion.caller.host import inprocess_worker_wanted

        with pytest.raises(ConfigurationError, match="workers per shard"):
            inprocess_worker_wanted()
    finally:
        reset_motion()
