"""Size a motion deployment: measure what one Redis costs per instance and per update.

Run it against a scratch Redis (it refuses a database that holds keys, and empties it
when done), with motion installed::

    python deploy/capacity.py memory --url redis://localhost:6379/15 --instances 1000000
    python deploy/capacity.py throughput --url redis://localhost:6379/15 \\
        --workers 2 --concurrency 8 --producers 2 --updates 20000 --instances 20000

``memory`` creates idle instances (meta and state hashes as a worker leaves them after
an update) and reports Redis memory per instance. ``throughput`` starts real Celery
workers (``celery -A workers worker -I capacity``) and producer processes
(:func:`motion.producer.enqueue`), applies ``--updates`` updates spread over
``--instances`` instances, and reports updates/s and Redis CPU time per update: Redis
runs commands on one core, so ``1 / cpu-per-update`` is the most one Redis sustains
whatever the number of workers. docs/operations.md has the numbers measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from motion import Component, scripts
from motion import keys as K
from motion.producer import enqueue

NAME = "CapacityProbe"
Probe = Component(NAME)


@Probe.init_state
def setup() -> dict[str, Any]:
    return {"n": 0, "note": ""}


@Probe.update("hit")
def hit(state: Any, props: Any) -> dict[str, Any]:
    return {"n": state["n"] + 1}


def _client(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"{url} holds keys: use an empty scratch database (e.g. /15).")
    return client


def _create(client: redis.Redis, ids: range, state_bytes: int, settled: bool) -> None:
    """Create instances in pipelined batches; ``settled``: meta as after one applied update."""
    note = Probe.serializer.dumps("x" * state_bytes)
    n = Probe.serializer.dumps(0)
    init = scripts.get("init")
    client.script_load(init.source)
    now = int(time.time() * 1000)
    for start in range(ids.start, ids.stop, 1000):
        with client.pipeline(transaction=False) as pipe:
            for i in range(start, min(start + 1000, ids.stop)):
                keys = K.InstanceKeys.of(K.instance_name(NAME, f"u{i}"))
                pipe.evalsha(
                    init.sha, 3, keys.meta, keys.state, K.COMPONENTS, NAME, now, "n", n,
                    "note", note,
                )  # fmt: skip
                if settled:
                    pipe.hset(
                        keys.meta,
                        mapping={"seq": 1, "applied": 1, "version": 2, "fence": 1,
                                 "applied_at": now, "last:hit": 1, "pending:hit": 0},
                    )  # fmt: skip
            pipe.execute()


def memory(args: argparse.Namespace) -> dict[str, Any]:
    """Redis memory per idle instance, at ``--instances`` instances."""
    client = _client(args.url)
    try:
        base = client.info("memory")["used_memory"]
        started = time.monotonic()
        _create(client, range(args.instances), args.state_bytes, settled=True)
        took = time.monotonic() - started
        used = client.info("memory")["used_memory"]
        return {
            "instances": args.instances,
            "state_bytes": args.state_bytes,
            "used_memory_mib": round(used / 2**20, 1),
            "bytes_per_instance": round((used - base) / args.instances),
            "creates_per_s": round(args.instances / took),
        }
    finally:
        client.flushdb()


def _start_workers(args: argparse.Namespace, folder: Path) -> list[subprocess.Popen[bytes]]:
    env = {**os.environ, "MOTION_REDIS_URL": args.url, "MOTION_INPROCESS_WORKER": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), env.get("PYTHONPATH", "")])
    procs = []
    for w in range(args.workers):
        log = folder / f"worker{w}.log"
        command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-I", "capacity"]
        command += ["-P", args.pool, "-c", str(args.concurrency), "-n", f"cap{w}@%h"]
        command += ["--without-mingle", "--without-gossip", "-l", "INFO", "-f", str(log)]
        procs.append(subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL))
    deadline = time.monotonic() + 60
    for w in range(args.workers):
        log = folder / f"worker{w}.log"
        while not (log.exists() and " ready." in log.read_text()):
            if time.monotonic() > deadline:
                sys.exit(f"worker {w} did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
    return procs


def _process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its reaped children, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def throughput(args: argparse.Namespace) -> dict[str, Any]:
    """Updates/s and Redis CPU per update with real workers and producer processes."""
    client = _client(args.url)
    folder = Path(tempfile.mkdtemp(prefix="motion-capacity-"))
    workers = _start_workers(args, folder)
    try:
        _create(client, range(args.instances), 16, settled=False)
        client.config_resetstat()
        cpu0 = _cpu(client)
        workers_cpu0 = sum(_process_cpu(p.pid) for p in workers)
        started = time.monotonic()
        per = args.updates // args.producers
        producers = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "_produce",
                    args.url,
                    str(p),
                    str(per),
                    str(args.instances),
                    str(args.producers),
                ],
                env={**os.environ, "MOTION_REDIS_URL": args.url},
            )
            for p in range(args.producers)
        ]
        for proc in producers:
            proc.wait()
        enqueued = time.monotonic() - started
        total = per * args.producers
        while int(client.hget(K.stats(NAME), "applied:hit") or 0) < total:
            if time.monotonic() - started > args.timeout:
                sys.exit(f"not all updates applied within {args.timeout}s; logs in {folder}")
            time.sleep(0.05)
        took = time.monotonic() - started
        cpu = _cpu(client) - cpu0
        workers_cpu = sum(_process_cpu(p.pid) for p in workers) - workers_cpu0
        stats = client.info("commandstats")
        calls = sum(int(v["calls"]) for v in stats.values())
        top = sorted(stats.items(), key=lambda kv: -float(kv[1]["usec"]))[:8]
        drains = client.hget(K.stats(NAME), "calls:hit")
        return {
            "updates": total,
            "instances": args.instances,
            "workers": f"{args.workers} x {args.pool} -c {args.concurrency}",
            "producers": args.producers,
            "enqueue_per_s": round(total / enqueued),
            "applied_per_s": round(total / took),
            "redis_cpu_us_per_update": round(cpu / total * 1e6, 1),
            "redis_commands_per_update": round(calls / total, 2),
            "worker_cpu_us_per_update": round(workers_cpu / total * 1e6),
            "op_calls": int(drains or 0),
            "redis_bound_updates_per_s": round(total / cpu) if cpu else None,
            "top_commands_per_update": {
                name.removeprefix("cmdstat_"): {
                    "calls": round(int(v["calls"]) / total, 2),
                    "us": round(float(v["usec"]) / total, 1),
                }
                for name, v in top
            },
        }
    finally:
        for proc in workers:
            proc.terminate()
        for proc in workers:
            proc.wait(30)
        client.flushdb()


def _produce(url: str, index: int, count: int, instances: int, producers: int) -> None:
    for i in range(count):
        target = (i * producers + index) % instances
        enqueue(NAME, f"u{target}", "hit", {}, url=url)


def main() -> None:
    """Command line: ``memory`` or ``throughput`` (see the module docstring)."""
    if sys.argv[1:2] == ["_produce"]:
        url, index, count, instances, producers = sys.argv[2:7]
        _produce(url, int(index), int(count), int(instances), int(producers))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory", help="Redis memory per idle instance")
    mem.add_argument("--url", required=True)
    mem.add_argument("--instances", type=int, default=100_000)
    mem.add_argument("--state-bytes", type=int, default=200, help="size of the state value")
    thr = sub.add_parser("throughput", help="updates/s and Redis CPU per update")
    thr.add_argument("--url", required=True)
    thr.add_argument("--workers", type=int, default=2)
    thr.add_argument("--pool", default="threads")
    thr.add_argument("--concurrency", type=int, default=8)
    thr.add_argument("--producers", type=int, default=2)
    thr.add_argument("--updates", type=int, default=20_000)
    thr.add_argument("--instances", type=int, default=20_000)
    thr.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    result = memory(args) if args.what == "memory" else throughput(args)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
