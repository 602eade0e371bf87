"""The directories of the component set's and the counters' parts on a cluster
(:func:`motion.floor.directory.note_once`).

On the session's real cluster, with a worker committing updates of instances on every
primary: a scrape and ``motion status`` read only the listed parts of
``motion:components`` and ``motion:stats:<component>`` (counted: the parts handed to
the servers), not the 16,384 slots, and their figures equal a read of every part; an
entry lost is listed again by the full pass.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from motion.floor import directory, indexes
from motion.floor import keys as K
from motion.floor.connection import get_async_redis, get_redis
from motion.tools import admin, metrics
from tests.cluster import Cluster
from tests.support import COMPONENTS, Worker

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402

STATS = K.stats("Ledger")
IDS = [f"cnt-{i}" for i in range(9)]


@pytest.fixture
def applied(counted: list[str], redis_cluster: Cluster, tmp_path: Path) -> Iterator[set[str]]:
    """Instances on every primary, each created and then updated (applied by a worker
    process); the slot tags of their parts."""
    env = {"MOTION_LEASE_SECONDS": "3", "MOTION_SWEEP_SECONDS": "1"}
    env["MOTION_BROKER_URL"] = redis_cluster.broker.url
    worker = Worker(redis_cluster.url, ["ledger"], tmp_path, name="cnt", env=env, pool="solo")
    worker.start()
    try:
        client = redis_cluster.client()
        homes = {client.get_node_from_key(K.InstanceKeys.of(f"Ledger__{i}").meta).port for i in IDS}
        client.close()
        assert len(homes) == 3, "the instances should live on all three primaries"
        for n, iid in enumerate(IDS):
            for item in range(1 + n % 3):
                Ledger(iid).run("add", {"item": item})
            Ledger(iid).flush_update(timeout=60)
        yield {K.tag_of(f"Ledger__{iid}") for iid in IDS}
    finally:
        worker.kill()


def read_by(read: list[str], reader: Any) -> tuple[Any, dict[str, int]]:
    """``reader()``, and how many parts of the component set and of the counters it read."""
    read.clear()
    out = reader()
    prefixes = {K.COMPONENTS: K.COMPONENTS + ":{", STATS: STATS + ":{"}
    return out, {index: sum(p.startswith(head) for p in read) for index, head in prefixes.items()}


def full_counters() -> dict[bytes, bytes]:
    """The counters as the old full read sums them: over all 16,384 parts."""
    return indexes.counters(get_redis(), STATS)


def test_a_scrape_and_status_read_only_the_listed_parts(
    counted: list[str], applied: set[str]
) -> None:
    client = get_redis()
    full = full_counters()
    expected = sum(1 + n % 3 for n in range(len(IDS)))
    assert sum(int(v) for k, v in full.items() if k.startswith(b"applied:")) == expected
    assert indexes.members(client, K.COMPONENTS) == {b"Ledger"}
    snap, parts = read_by(counted, lambda: metrics.collect(client))
    assert 0 < parts[K.COMPONENTS] <= len(applied)  # the creators listed their parts
    assert 0 < parts[STATS] <= len(applied)  # the worker listed the parts it counted in
    assert snap.components["Ledger"] == metrics._parse_stats(full)
    (row,), parts = read_by(counted, lambda: admin.status())
    assert 0 < parts[K.COMPONENTS] <= len(applied) and 0 < parts[STATS] <= len(applied)
    assert (row.component, row.applied, row.pending_instances) == ("Ledger", expected, 0)
    assert admin.clear_instance(f"Ledger__{IDS[0]}")  # a listed part may empty: harmless
    assert metrics.collect(client).components["Ledger"] == metrics._parse_stats(full_counters())


def test_an_entry_lost_is_listed_again_by_the_full_pass(
    counted: list[str], applied: set[str]
) -> None:
    client = get_redis()
    full = full_counters()
    client.delete(K.directory(STATS), K.directory(K.COMPONENTS))  # as if the notes were lost
    snap, parts = read_by(counted, lambda: metrics.collect(client))
    assert parts == {K.COMPONENTS: 0, STATS: 0} and snap.components == {}  # missing meanwhile
    indexes._groups.pop(STATS, None)  # (grouped by the full read above)
    assert directory.rebuild_if_due(client) is True
    assert STATS not in indexes._groups  # the counters' pass keeps no grouping of its own
    assert len(directory.parts(client, K.COMPONENTS)) <= len(applied)
    assert 0 < len(directory.parts(client, STATS)) <= len(applied)
    snap, parts = read_by(counted, lambda: metrics.collect(client))
    assert snap.components["Ledger"] == metrics._parse_stats(full)
    (row,) = admin.status(["Ledger"])
    assert row.applied == sum(1 + n % 3 for n in range(len(IDS)))


def test_an_async_creator_lists_its_part_once(cluster_url: str) -> None:
    """The async caller's form of the note (``arun`` creating an instance)."""
    name = "Ledger__cnt-async"
    part, key = K.part(K.COMPONENTS, name), K.directory(K.COMPONENTS)

    async def note() -> None:
        client = get_async_redis(name)
        await directory.anote_once(client, part)
        await client.aclose()

    asyncio.run(note())
    assert get_redis().zrange(key, 0, -1) == [K.tag_of(name).encode()]
    get_redis().delete(key)
    asyncio.run(note())  # this process listed it already: no second ZADD
    assert get_redis().zrange(key, 0, -1) == []


def test_on_one_redis_nothing_is_listed(redis_url: str) -> None:
    """A single Redis: the plain keys, no directory written."""
    client = get_redis()
    Ledger("cnt-single").run("add", {"item": 1})
    assert metrics.collect(client).components["Ledger"] == metrics._parse_stats(full_counters())
    assert [row.component for row in admin.status()] == ["Ledger"]
    assert not list(client.scan_iter(match=f"{K.PREFIX}:directory*"))
