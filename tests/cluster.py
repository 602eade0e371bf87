"""A real Redis Cluster for the tests: three primaries with one replica each.

Six ``redis-server --cluster-enabled yes`` processes on free loopback ports, joined by
``redis-cli --cluster create ... --cluster-replicas 1 --cluster-yes``, once per test
session (the ``redis_cluster`` fixture), stopped by PID at the end. A cluster cannot be
the Celery broker, so the session also runs a plain redis-server as the broker.
Waiting is on conditions with deadlines (every node says ``cluster_state:ok``, every
replica's link is up), never a fixed sleep.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support import RedisServer, clear_motion_env, wait_for

#: primaries, each with this many replicas
PRIMARIES, REPLICAS = 3, 1


def cluster_port(taken: set[int]) -> int:
    """A free loopback port P with P + 10000 free too (the cluster bus), both below the
    kernel's ephemeral range (32768 up), so no outgoing connection takes either meanwhile."""
    while True:
        port = random.randint(12000, 22700)
        if port in taken:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        taken.add(port)
        return port


class Cluster:
    """The servers of one Redis Cluster, and the broker its tests use."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes = [
            RedisServer(
                folder / f"node-{i}",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(folder / f"node-{i}" / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
                "--cluster-allow-replica-migration",
                "no",
            )
            for i in range(PRIMARIES * (1 + REPLICAS))
        ]
        taken: set[int] = set()
        for node in self.nodes:
            node.port = cluster_port(taken)
            node.pick_port = lambda: cluster_port(taken)
        self.broker = RedisServer(folder / "broker")

    @property
    def url(self) -> str:
        """``redis+cluster://`` with every node as a start-up node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self) -> Cluster:
        """Start every node and join them; if any step fails, stop what was started."""
        try:
            for node in [*self.nodes, self.broker]:
                node.start()
            args = ["redis-cli", "--cluster", "create"]
            args += [f"127.0.0.1:{n.port}" for n in self.nodes]
            args += ["--cluster-replicas", str(REPLICAS), "--cluster-yes"]
            done = subprocess.run(args, capture_output=True, text=True, timeout=120)
            assert done.returncode == 0, done.stdout + done.stderr
            wait_for(self._healthy, 60, "the cluster to be ok on every node, replicas linked")
        except BaseException:
            self.stop()
            raise
        return self

    def _healthy(self) -> bool:
        for node in self.nodes:
            client = node.client()
            try:
                info = client.execute_command("CLUSTER", "INFO").decode()
                if "cluster_state:ok" not in info:
                    return False
                replication = client.info("replication")
                if replication["role"] == "slave" and replication["master_link_status"] != "up":
                    return False
            finally:
                client.close()
        return len(self.primaries()) == PRIMARIES

    def client(self) -> redis.RedisCluster:
        """A plain redis-py cluster client (for the tests' own checks)."""
        return redis.RedisCluster(host="127.0.0.1", port=self.nodes[0].port)

    def primaries(self) -> list[RedisServer]:
        """The nodes that are primaries now."""
        out = []
        for node in self.nodes:
            if node.proc is None:
                continue
            client = node.client()
            try:
                if client.info("replication")["role"] == "master":
                    out.append(node)
            except redis.RedisError:
                continue
            finally:
                client.close()
        return out

    def flush(self) -> None:
        """Empty every primary (replicas follow) and the broker."""
        for node in self.primaries():
            client = node.client()
            client.flushall()
            client.close()
        broker = self.broker.client()
        broker.flushall()
        broker.close()

    def stop(self) -> None:
        for node in [*self.nodes, self.broker]:
            node.stop()


def missing_reason() -> str | None:
    """Why no cluster can run here, or ``None`` when one can."""
    if not shutil.which("redis-cli") or not shutil.which("redis-server"):
        return "redis-server and redis-cli are needed for the Redis Cluster tests"
    return None


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The session's Redis Cluster (3 primaries + 3 replicas) and its broker."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    cluster = Cluster(tmp_path_factory.mktemp("cluster")).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def cluster_url(redis_cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty cluster; this process's motion points at it (and at its broker)."""
    from tests.conftest import reset_motion

    redis_cluster.flush()
    clear_motion_env(monkeypatch, redis_cluster.url)
    monkeypatch.setenv("MOTION_BROKER_URL", redis_cluster.broker.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    monkeypatch.setenv("MOTION_LEASE_SECONDS", "3")
    monkeypatch.setenv("MOTION_SWEEP_SECONDS", "1")
    reset_motion()
    yield redis_cluster.url
    reset_motion()


@pytest.fixture
def counted(cluster_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Every index part a script call is given (the parts a pass or a read reads), in
    order, on the session's cluster."""
    from motion.floor import indexes

    read: list[str] = []
    real = indexes.run_over

    def counting(client: Any, name: str, parts: list[str], args: list[Any]) -> Any:
        read.extend(parts)
        return real(client, name, parts, args)

    monkeypatch.setattr(indexes, "run_over", counting)
    yield read
