"""motion on a Redis Cluster (``MOTION_REDIS_URL=redis+cluster://...``).

The contract subset of the default run on the session's real cluster (three primaries
with a replica each, :mod:`tests.cluster`), with real Celery worker subprocesses and a
plain redis-server as the broker: per-instance order with several producers,
instances spread over every primary, and workers; the admin utilities (status, list,
flush, clear); one fault, a worker SIGKILLed mid-update, with nothing lost or
doubled; and a live slot migration under load. Plus the rules of the configuration
and of the per-slot index parts (no server needed).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import pytest

from motion import ConfigurationError, get_instances
from motion.floor import indexes, slots
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.tools import admin, browse, metrics, names, producer, series
from tests.cluster import Cluster
from tests.conftest import reset_motion
from tests.support import (
    COMPONENTS,
    RedisServer,
    Worker,
    assert_applied_in_order,
    motion_env,
    run_producers,
    wait_for,
)

sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger


def cluster_worker(
    cluster: Cluster,
    log_dir: Path,
    name: str,
    modules: tuple[str, ...] = ("ledger",),
    **options: object,
) -> Worker:
    env = {"MOTION_LEASE_SECONDS": "3", "MOTION_SWEEP_SECONDS": "1"}
    env["MOTION_BROKER_URL"] = cluster.broker.url
    env.update(options.pop("env", {}) or {})  # type: ignore[arg-type]
    return Worker(cluster.url, list(modules), log_dir, name=name, env=env, **options)  # type: ignore[arg-type]


@pytest.fixture
def cluster_workers(cluster_url: str):  # type: ignore[no-untyped-def]
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


def primary_of(cluster: Cluster, key: str) -> int:
    """The port of the primary serving ``key``'s slot."""
    client = cluster.client()
    try:
        return int(client.get_node_from_key(key).port)
    finally:
        client.close()


@pytest.mark.integration
def test_updates_apply_in_order_on_every_primary(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path
):
    for name in "ab":
        worker = cluster_worker(redis_cluster, tmp_path, name, pool="prefork", concurrency=2)
        cluster_workers.append(worker.start())
    instances = [f"cl-order-{i}" for i in range(6)]
    homes = {primary_of(redis_cluster, K.InstanceKeys.of(f"Ledger__{i}").meta) for i in instances}
    assert len(homes) == 3, "the instances should live on all three primaries"
    env = motion_env(cluster_url, MOTION_BROKER_URL=redis_cluster.broker.url)
    run_producers(env, instances, 60, n=2)
    for instance in instances:
        Ledger(instance).flush_update(timeout=60)
    client = get_redis()
    for instance in instances:
        handle = Ledger(instance)
        seqs, items = handle.read_state("seqs"), handle.read_state("items")
        assert_applied_in_order(seqs, items, 20, instance)
        assert int(client.hget(K.InstanceKeys.of(handle.instance_name).meta, "applied")) == 20
    # (a drain that lingers after its last commit leaves both when its linger ends)
    wait_for(
        lambda: indexes.zcard(client, K.PENDING) == 0 and indexes.zcard(client, K.SWEEP) == 0,
        10,
        "the pending and sweep indexes to empty",
    )
    counters = indexes.counters(client, K.stats("Ledger"))
    assert sum(int(v) for k, v in counters.items() if k.startswith(b"applied:")) == 120
    assert indexes.members(client, K.COMPONENTS) == {b"Ledger"}


@pytest.mark.integration
def test_admin_utilities_see_the_whole_cluster(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path
):
    ids = [f"cl-admin-{i}" for i in range(8)]
    for iid in ids:
        Ledger(iid).run("add", {"item": 1})
    assert get_instances("Ledger") == sorted(ids)  # SCAN fans out over the primaries
    assert metrics.collect(get_redis()).pending_instances == 8  # the exporter's figure
    paged: list[str] = []
    page = names.page("Ledger", size=3)  # the dashboard's pages: the name index's parts merged
    while True:
        paged += page.ids
        if not page.next_cursor:
            break
        page = names.page("Ledger", cursor=page.next_cursor, size=3)
    assert paged == sorted(ids)  # in id order across the parts
    assert names.page("Ledger", prefix="cl-admin-7").ids == ["cl-admin-7"]
    assert browse.components() == ["Ledger"]
    (row,) = admin.status(["Ledger"])
    assert (row.pending_instances, row.pending_updates) == (8, 8)
    broker = redis_cluster.broker.client()
    broker.flushall()  # the wake-ups are lost: the worker's sweeper finds every part's instances
    broker.close()
    # the worker drains everything; a producer without the code enqueues too
    cluster_workers.append(cluster_worker(redis_cluster, tmp_path, "w", pool="solo").start())
    assert producer.enqueue("Ledger", "cl-admin-0", "add", {"item": 2}) == 2
    for iid in ids:
        assert admin.flush_instance(f"Ledger__{iid}", timeout=60) >= 1
    assert Ledger("cl-admin-0").read_state("items") == [1, 2]
    (row,) = admin.status(["Ledger"])
    assert (row.pending_instances, row.applied, row.failed) == (0, 9, 0)
    assert sum(c.get("applied", 0) for c in browse.flow_counts("Ledger").values()) == 9
    applied = sum(m.flows.get("add", {}).get("applied", 0) for m in series.minutes("Ledger", 1))
    assert applied == 9  # the per-minute counters, summed over their parts
    assert admin.clear_instance("Ledger__cl-admin-0")
    assert "cl-admin-0" not in get_instances("Ledger")
    subprocess.run(  # the CLI on the cluster
        [sys.executable, "-m", "motion.tools.cli", "status"],
        env=motion_env(cluster_url, MOTION_BROKER_URL=redis_cluster.broker.url),
        check=True,
        capture_output=True,
        timeout=60,
    )


@pytest.mark.integration
def test_worker_killed_mid_update_loses_and_doubles_nothing_on_a_cluster(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path
):
    doomed = cluster_worker(redis_cluster, tmp_path, "doomed", pool="prefork", concurrency=1)
    cluster_workers.append(doomed.start())
    handle = Ledger("cl-crash")
    marker = tmp_path / "running"
    handle.run("slow", {"item": 0, "sleep": 30, "marker": str(marker)})
    for i in range(1, 6):
        handle.run("add", {"item": i})
    wait_for(marker.exists, 30, "the slow update op to start")
    doomed.kill(signal.SIGKILL)
    env = {"LEDGER_SLOW_CAP": "0.1"}
    rescuer = cluster_worker(redis_cluster, tmp_path, "rescuer", pool="solo", env=env)
    cluster_workers.append(rescuer.start())
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == [1, 2, 3, 4, 5, 6]
    assert handle.read_state("items") == [0, 1, 2, 3, 4, 5]
    client = get_redis()
    keys = K.InstanceKeys.of(handle.instance_name)
    assert int(client.hget(keys.meta, "applied")) == 6 and client.hlen(keys.inbox) == 0
    assert int(indexes.counters(client, K.stats("Ledger")).get(b"takeovers", 0)) == 1
    # (a drain that lingers after its last commit leaves the index when its linger ends)
    wait_for(lambda: indexes.zcard(client, K.PENDING) == 0, 10, "the pending index to empty")


@pytest.mark.integration
def test_a_debounce_fires_on_a_cluster_when_its_worker_was_killed(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path
):
    """The due index is split per slot, its non-empty parts listed in its directory:
    the other worker's firer finds the killed worker's debounce there and fires it."""
    from flow_control import Flowy

    first = cluster_worker(redis_cluster, tmp_path, "a", ("flow_control",), pool="solo")
    cluster_workers.append(first.start())
    handle = Flowy("cl-killed")
    for x in range(3):
        handle.run("longdeb", {"x": x})
    parked = K.InstanceKeys.of(handle.instance_name).parked
    wait_for(lambda: get_redis().zcard(parked) == 3, 10, "the updates to be parked")
    first.kill()
    second = cluster_worker(redis_cluster, tmp_path, "b", ("flow_control",), pool="solo")
    cluster_workers.append(second.start())
    handle.flush_update("longdeb", timeout=30)
    assert handle.read_state("batches") == [[[0, 1, 2], 0]]
    assert indexes.zcard(get_redis(), K.TIMERS) == 0


def migrate_slot(cluster: Cluster, slot: int, target_port: int) -> None:
    """Move ``slot`` to the primary on ``target_port`` as ``redis-cli --cluster
    reshard`` does: IMPORTING/MIGRATING, MIGRATE the keys in batches, then NODE."""
    client = cluster.client()
    try:
        source = client.nodes_manager.slots_cache[slot][0]
        primaries = {int(n.port): n for n in client.get_primaries()}
    finally:
        client.close()
    target = primaries[target_port]
    src = next(n for n in cluster.nodes if n.port == int(source.port)).client()
    dst = next(n for n in cluster.nodes if n.port == target_port).client()
    src_id = src.execute_command("CLUSTER", "MYID").decode()
    dst_id = dst.execute_command("CLUSTER", "MYID").decode()
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 2):
        src.execute_command("MIGRATE", "127.0.0.1", target.port, "", 0, 5000, "KEYS", *keys)
    for node in cluster.primaries():
        node.client().execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


@pytest.mark.integration
def test_a_live_slot_migration_loses_doubles_and_reorders_nothing(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path
):
    cluster_workers.append(
        cluster_worker(redis_cluster, tmp_path, "m", pool="threads", concurrency=4).start()
    )
    handle = Ledger("cl-moving")
    handle.run("add", {"item": "p:-1"}, flush_update=True)
    key = K.InstanceKeys.of(handle.instance_name).meta
    slot = slots.key_slot(key)
    others = [
        int(n.port) for n in redis_cluster.primaries() if n.port != primary_of(redis_cluster, key)
    ]
    count = 300
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for i in range(count):
                Ledger("cl-moving").run("add", {"item": f"p:{i}"})
        except BaseException as exc:
            errors.append(exc)

    feeder = threading.Thread(target=produce)
    feeder.start()
    wait_for(lambda: int(get_redis().hget(key, "seq")) > 20, 30, "updates to flow")
    migrate_slot(redis_cluster, slot, others[0])
    feeder.join(120)
    assert not errors, errors
    assert primary_of(redis_cluster, key) == others[0]
    handle.flush_update(timeout=60)
    seqs, items = handle.read_state("seqs"), handle.read_state("items")
    assert_applied_in_order(seqs, items, count + 1, handle.instance_name)
    # (a drain that lingers after its last commit leaves the index when its linger ends)
    wait_for(lambda: indexes.zcard(get_redis(), K.PENDING) == 0, 10, "the pending index to empty")


def test_each_index_part_lives_in_its_instances_slot(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_REDIS_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    monkeypatch.setenv("MOTION_BROKER_URL", "redis://127.0.0.1:7100/0")
    reset_motion()
    try:
        for name in ["Ledger__a", "Ledger__b}c", "C__{x}", "Büro__ü", "S__" + "z" * 300]:
            want = slots.key_slot(K.InstanceKeys.of(name).meta)
            for index in (K.PENDING, K.SWEEP, K.HELD, K.COMPONENTS, K.stats("Ledger")):
                assert slots.key_slot(K.part(index, name)) == want, (name, index)
            assert slots.key_slot(K.stats("Ledger", name)) == want
        assert len(set(K.parts(K.PENDING))) == slots.SLOTS
    finally:
        reset_motion()
    # on a single Redis the plain keys, as before
    monkeypatch.setenv("MOTION_REDIS_URL", "redis://127.0.0.1:7000/0")
    reset_motion()
    try:
        assert K.part(K.PENDING, "Ledger__a") == K.PENDING and K.parts(K.SWEEP) == [K.SWEEP]
    finally:
        reset_motion()


def test_a_cluster_needs_a_broker_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_REDIS_URL", "redis+cluster://127.0.0.1:7000,127.0.0.1:7001")
    monkeypatch.delenv("MOTION_BROKER_URL", raising=False)
    reset_motion()
    try:
        with pytest.raises(ConfigurationError, match="set MOTION_BROKER_URL"):
            Ledger("x").run("add", {"item": 1})
        monkeypatch.setenv("MOTION_BROKER_URL", "redis+cluster://127.0.0.1:7000")
        reset_motion()
        with pytest.raises(ConfigurationError, match="cannot be a Redis Cluster"):
            Ledger("x").run("add", {"item": 1})
        monkeypatch.setenv("MOTION_REDIS_URL", "redis+cluster://127.0.0.1:notaport")
        reset_motion()
        with pytest.raises(ConfigurationError, match="host:port separated by commas"):
            Ledger("x").run("add", {"item": 1})
    finally:
        reset_motion()


@pytest.mark.integration
def test_shards_are_copied_into_the_cluster_and_go_on_there(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster, cluster_workers, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The way from MOTION_REDIS_SHARDS to a cluster: `motion copy` each shard into it."""
    shards = [RedisServer(tmp_path / f"shard-{i}").start() for i in range(2)]
    try:
        ids = {0: [f"sh0-{i}" for i in range(4)], 1: [f"sh1-{i}" for i in range(4)]}
        for n, shard in enumerate(shards):  # pending updates, no worker yet
            monkeypatch.setenv("MOTION_REDIS_URL", shard.url)
            monkeypatch.delenv("MOTION_BROKER_URL", raising=False)
            reset_motion()
            for iid in ids[n]:
                Ledger(iid).run("add", {"item": n})
            shard.client().hincrby(K.stats("Ledger"), "applied:add", 5)
        monkeypatch.setenv("MOTION_REDIS_URL", cluster_url)
        monkeypatch.setenv("MOTION_BROKER_URL", redis_cluster.broker.url)
        reset_motion()
        env = motion_env(cluster_url, MOTION_BROKER_URL=redis_cluster.broker.url)
        for shard in shards:
            done = subprocess.run(
                [sys.executable, "-m", "motion.tools.cli", "copy", shard.url, cluster_url],
                env=env, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr
        every = sorted(ids[0] + ids[1])
        assert get_instances("Ledger") == every
        (row,) = admin.status(["Ledger"])
        assert (row.pending_instances, row.applied) == (8, 10)  # indexes split, counts added
        cluster_workers.append(cluster_worker(redis_cluster, tmp_path, "w", pool="solo").start())
        for n, group in ids.items():
            for iid in group:
                handle = Ledger(iid)
                handle.run("add", {"item": "cluster"}, flush_update=True)
                assert handle.read_state("items") == [n, "cluster"]
        (row,) = admin.status(["Ledger"])
        assert (row.pending_instances, row.applied) == (0, 26)
    finally:
        for shard in shards:
            shard.stop()


@pytest.mark.integration
def test_the_exporter_reads_the_memory_of_every_primary(  # type: ignore[no-untyped-def]
    cluster_url, redis_cluster
):
    """``motion_redis_used_memory_bytes`` sums the primaries'; each has its own gauge
    (``node``), and the exporter started on a cluster URL serves them."""
    from prometheus_client.parser import text_string_to_metric_families

    from motion.floor.embedded import free_port

    snap = metrics.collect(get_redis())
    primaries = {f"127.0.0.1:{node.port}" for node in redis_cluster.primaries()}
    assert set(snap.memory_by_node) == primaries
    assert all(used > 0 for used, _ in snap.memory_by_node.values())
    assert snap.used_memory_bytes == sum(used for used, _ in snap.memory_by_node.values())
    port = free_port()
    server = metrics.serve(port, "127.0.0.1", cluster_url)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            text = resp.read().decode()
    finally:
        server.shutdown()
    samples = {
        (s.name, s.labels.get("node", "")): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("motion_up", "")] == 1
    assert {n for name, n in samples if name == "motion_redis_node_used_memory_bytes"} == primaries
    total = sum(
        v for (name, _), v in samples.items() if name == "motion_redis_node_used_memory_bytes"
    )
    assert samples[("motion_redis_used_memory_bytes", "")] == total
