"""The battery's world on a Redis Cluster: a cluster of its own per scenario.

:class:`ClusterBattery` is the battery's :class:`~tests.battery.conftest.Battery` with
the state on a fresh Redis Cluster (three primaries with a replica each,
:class:`tests.cluster.Cluster`) and a plain redis-server as the broker, for the
callers, the producers and the workers alike; its client is motion's cluster client.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.battery.conftest import FAST, Battery
from tests.battery.harness import Size, battery_size
from tests.cluster import Cluster
from tests.conftest import reset_motion
from tests.support import clear_motion_env


class ClusterBattery(Battery):
    """A battery world whose state lives on a cluster of its own."""

    def __init__(self, folder: Path, cluster: Cluster, size: Size) -> None:
        super().__init__(folder, cluster.nodes[0], size)
        self.cluster = cluster
        self.broker_env = {"MOTION_BROKER_URL": cluster.broker.url}

    @property
    def url(self) -> str:
        return self.cluster.url

    def client(self):  # type: ignore[no-untyped-def]
        from motion.floor.connection import get_redis

        return get_redis()  # motion's cluster client: timeouts, retries, topology refresh


@pytest.fixture
def cluster_battery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ClusterBattery]:
    """A fresh cluster and broker for one scenario; this process's motion points at them."""
    size = battery_size()
    cluster = Cluster(tmp_path / "cluster").start()
    clear_motion_env(monkeypatch, cluster.url)
    monkeypatch.setenv("MOTION_BROKER_URL", cluster.broker.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    reset_motion()
    world = ClusterBattery(tmp_path, cluster, size)
    try:
        yield world
    finally:
        world.close()
        cluster.stop()
        reset_motion()
