"""``python deploy/capacity.py cluster``: updates/s and Redis CPU per primary on a cluster.

Starts a Redis Cluster of ``--primaries 1,3`` primaries (no replicas: the figure is
the primaries' own cost; a replica adds its own), each a ``redis-server`` with
``deploy/redis.conf`` plus ``cluster-enabled yes``, the slots split evenly, a plain
redis-server as the broker, ``--workers`` workers and ``--producers`` producer
processes (as ``throughput`` does), and prints one row per primary count:

* updates/s from the producers' start until the last update is applied;
* per primary: Redis CPU per update (``INFO cpu``: its CPU over the updates it saw, so
  the figures add up to the cluster's cost per update) and its commands per update;
* the primaries' CPU with the workers running and no update (measured for 10 s first:
  the workers' heartbeats, the firers' looks at the due index's directory, the
  sweeper's and held check's passes over what the directories list, and the rare full
  pass over every part), and the CPU per update net of it;
* the broker's and the workers' CPU per update, the machine's busy cores.

The tool's own polling (it reads the probe's counters every 0.2 s) is measured
before the load and taken out of the Redis figures; the sweeper's passes (one per
sweep period, over the parts its directory lists as due) are motion's own cost and
stay in. ``capacity.py passes`` (``capacity_passes.py``) times the passes alone.

On a machine with few cores this measures the cost of an update on a cluster (and
how evenly the primaries share it), not how throughput scales: the workers and
producers take the same cores. docs/operations.md turns these figures into a sizing
table. Everything started is stopped and deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import capacity as cap
import redis

#: seconds the cluster is watched with workers running and no load
IDLE_SECONDS = 10.0


def _port(taken: set[int]) -> int:
    """A free port P with P + 10000 free too (the cluster bus)."""
    while True:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        if port < 55000 and port not in taken:
            with contextlib.suppress(OSError), socket.socket() as bus:
                bus.bind(("127.0.0.1", port + 10000))
                taken.add(port)
                return port


@contextlib.contextmanager
def cluster(primaries: int) -> Iterator[tuple[str, list[redis.Redis]]]:
    """A cluster of ``primaries`` primaries; yields its URL and a client per primary."""
    folder = Path(tempfile.mkdtemp(prefix="motion-capacity-cluster-"))
    taken: set[int] = set()
    ports = [_port(taken) for _ in range(primaries)]
    procs = []
    try:
        for port in ports:
            node = folder / str(port)
            node.mkdir()
            command = ["redis-server", str(cap.HERE / "redis.conf"), "--port", str(port)]
            command += ["--bind", "127.0.0.1", "--dir", str(node), "--logfile", "redis.log"]
            command += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"]
            procs.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=node))
        clients = [redis.Redis(port=port) for port in ports]
        _wait(lambda: all(_pings(c) for c in clients), "the nodes to start")
        for client in clients[1:]:
            client.execute_command("CLUSTER", "MEET", "127.0.0.1", ports[0])
        step = -(-16384 // primaries)
        for i, client in enumerate(clients):
            first, last = i * step, min((i + 1) * step, 16384) - 1
            client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
        _wait(lambda: all(_ok(c) for c in clients), "the cluster to be ok")
        yield "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports), clients
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


def _pings(client: redis.Redis) -> bool:
    with contextlib.suppress(redis.ConnectionError):
        return bool(client.ping())
    return False


def _ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER", "INFO").decode()
    return "cluster_state:ok" in info and "cluster_slots_assigned:16384" in info


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.05)


def _create(url: str, instances: int) -> None:
    """Create the probe's instances (the init script, through motion's cluster client)."""
    from motion.floor import keys as K
    from motion.floor import scripts
    from motion.floor.connection import get_redis

    client = get_redis()
    n = cap.Probe.serializer.dumps(0)
    now = int(time.time() * 1000)
    for i in range(instances):
        keys = K.InstanceKeys.of(K.instance_name(cap.NAME, f"u{i}"))
        components = K.part(K.COMPONENTS, keys.name)
        args = [cap.NAME, now, secrets.token_hex(16), 1, "n", n, "note", n]
        scripts.run(client, "init", [keys.meta, keys.state, components, keys.claim], args)


class Applied:
    """How many updates the probe's counters say were applied: one ``parts`` script per
    primary over the counter parts of the probe's instances' slots (not all 16,384)."""

    def __init__(self, instances: int) -> None:
        from motion.floor import keys as K

        names = (K.instance_name(cap.NAME, f"u{i}") for i in range(instances))
        self.parts = sorted({K.stats(cap.NAME, name) for name in names})

    def __call__(self) -> int:
        from motion.floor import indexes
        from motion.floor.connection import get_redis

        client = get_redis()
        total = 0
        for node, chunk in indexes._by_primary(client, self.parts):
            reply = indexes._run(node, chunk, ("HGET", "applied:hit"))
            total += sum(int(value) for value in reply[1::2])  # sparse: position, value
        return total


def _poll_cost(applied: Applied, nodes: list[redis.Redis], polls: int = 20) -> tuple[float, int]:
    """Redis CPU seconds and commands one poll of ``applied`` costs (the tool's own load,
    taken out of the figures)."""
    for client in nodes:
        client.config_resetstat()
    cpu0 = sum(cap._redis_cpu(c) for c in nodes)
    for _ in range(polls):
        applied()
    cpu = sum(cap._redis_cpu(c) for c in nodes) - cpu0
    calls = sum(sum(int(v["calls"]) for v in c.info("commandstats").values()) for c in nodes)
    return cpu / polls, calls // polls


def _row(args: argparse.Namespace, primaries: int, broker_url: str) -> dict[str, Any]:
    with cluster(primaries) as (url, nodes):
        os.environ["MOTION_REDIS_URL"], os.environ["MOTION_BROKER_URL"] = url, broker_url
        from motion.tools.testing import forget_process_state

        forget_process_state()
        broker = redis.Redis.from_url(broker_url)
        broker.flushall()
        _create(url, args.instances)
        applied = Applied(args.instances)
        poll_cpu, poll_calls = _poll_cost(applied, nodes)
        polls = 0
        servers = cap.Servers(url, broker_url)
        folder = Path(tempfile.mkdtemp(prefix="motion-capacity-"))
        procs = cap._start_workers(args.workers, args, servers, folder)
        try:
            everyone = [*nodes, broker]
            idle0 = [cap._redis_cpu(c) for c in everyone]
            time.sleep(IDLE_SECONDS)  # measuring: what the cluster costs with no update
            idle = [
                (cap._redis_cpu(c) - c0) / IDLE_SECONDS
                for c, c0 in zip(everyone, idle0, strict=True)
            ]
            feeders = cap._spawn_producers(args, args.producers, servers)
            total = args.updates // args.producers * args.producers
            for client in everyone:
                client.config_resetstat()
            cpu0 = [cap._redis_cpu(c) for c in everyone]
            workers0, machine0 = cap._tree_cpu([p.pid for p in procs]), cap._machine_busy()
            own0 = time.process_time()
            started = time.monotonic()
            producers_cpu = cap._go(feeders)
            while applied() < total:
                polls += 1
                if time.monotonic() - started > args.timeout:
                    sys.exit(f"not all updates applied within {args.timeout}s; logs in {folder}")
                time.sleep(0.2)
            took = time.monotonic() - started
            cpu = [cap._redis_cpu(c) - c0 for c, c0 in zip(everyone, cpu0, strict=True)]
            calls = [
                sum(int(v["calls"]) for v in c.info("commandstats").values()) for c in everyone
            ]
            workers_cpu = cap._tree_cpu([p.pid for p in procs]) - workers0
            # the tool's polls, spread over the primaries as their parts are
            for i in range(len(nodes)):
                cpu[i] -= (polls + 1) * poll_cpu / len(nodes)
                calls[i] -= (polls + 1) * poll_calls // len(nodes)
        finally:
            cap._stop(procs)
            shutil.rmtree(folder, ignore_errors=True)
        row: dict[str, Any] = {"primaries": primaries, "updates/s": round(total / took)}
        per = [round(c / total * 1e6) for c in cpu[:-1]]
        row["redis µs/upd (per primary)"] = " + ".join(map(str, per)) + f" = {sum(per)}"
        row["busiest primary CPU"] = f"{max(cpu[:-1]) / took:.0%}"
        fixed = sum(idle[:-1])  # the passes over the parts: sweeper, firer, held check
        row["idle redis CPU"] = f"{fixed:.1%}"
        row["redis µs/upd net of idle"] = round((sum(cpu[:-1]) - fixed * took) / total * 1e6)
        row["redis cmds/upd"] = round(sum(calls[:-1]) / total, 1)
        row["broker µs/upd"] = round(cpu[-1] / total * 1e6)
        row["worker µs/upd"] = round(workers_cpu / total * 1e6)
        row["producer µs/upd"] = round(producers_cpu / total * 1e6)
        busy = cap._machine_busy() - machine0
        row["busy cores"] = f"{busy / took:.2f} of {os.cpu_count()}"
        ours = workers_cpu + producers_cpu + sum(cpu) + time.process_time() - own0
        row["others' cores"] = f"{max(busy - ours, 0) / took:.2f}"  # processes not in this run
        return row


def run(args: argparse.Namespace) -> None:
    """One row per primary count of ``--primaries``."""
    print(
        f"# cluster: {args.updates} updates over {args.instances} instances, "
        f"{args.producers} producers, {args.workers} workers -P {args.pool} -c "
        f"{args.concurrency}, a separate broker"
    )
    with cap.redis_server(args.set) as broker_url:
        for i, primaries in enumerate(args.primaries):
            cap._emit(_row(args, primaries, broker_url), i == 0, args.json)


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``cluster`` subcommand."""
    cmd = sub.add_parser("cluster", parents=parents, help="a Redis Cluster: CPU per primary")
    cmd.add_argument("--primaries", type=cap._counts, default=[1, 3], help="e.g. 1,3")
    cmd.add_argument("--workers", type=int, default=2)
    cmd.add_argument("--pool", default="threads")
    cmd.add_argument("--concurrency", type=int, default=8)
    cmd.add_argument("--producers", type=int, default=2)
