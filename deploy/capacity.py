"""Size a motion deployment: measure what one Redis costs per instance and per update.

Needs motion installed and ``redis-server`` on the PATH, nothing else: without ``--url``
each command starts its own redis-server on a free local port with ``deploy/redis.conf``
(AOF on) in a temporary directory, and stops and deletes it at the end. With ``--url`` it
uses that scratch database instead (it refuses one that holds keys and empties it when
done)::

    python deploy/capacity.py memory --instances 1000000 --state-bytes 200
    python deploy/capacity.py throughput --workers 1,2,4 --updates 10000 --instances 10000
    python deploy/capacity.py throughput --workers 2 --broker separate
    python deploy/capacity.py enqueue --producers 1,2,4 --updates 20000 --instances 20000
    python deploy/capacity.py cluster --primaries 1,3 --updates 10000 --instances 10000

``memory`` creates idle instances (meta and state hashes as a worker leaves them after
an update) and reports Redis memory per instance.

``throughput`` starts real Celery workers (``celery -A workers worker -I capacity``, so
they consume this module's component's queues) and producer processes calling
:func:`motion.producer.enqueue`, applies ``--updates`` updates round-robin over
``--instances`` instances (as many instances as updates: every update wakes an idle
instance; few instances: many updates per drain), and prints one row per worker count
of ``--workers 1,2,4``, each measured on an emptied database:

* updates/s from the producers' start until the last update is applied;
* Redis CPU per update (``INFO cpu`` user + sys) and Redis CPU utilisation (Redis CPU
  seconds per wall second): Redis runs commands on one core, so utilisation near 100%
  means this Redis is the bottleneck and ``1 / cpu-per-update`` is its ceiling;
* worker and producer CPU per update, and the machine's busy cores (``/proc/stat``,
  every process on the machine): near the core count means the machine is saturated;
  "others' cores" is the part of them not spent by this run (Redis, workers, producers,
  this tool): other load on a shared machine;
* the peak of ``ZCARD motion:pending`` (sampled every 100 ms): instances waiting for a
  worker, the autoscaling signal.

``--broker separate`` puts Celery's queues on a second redis-server (``MOTION_BROKER_URL``)
and reports the state Redis and the broker separately. ``enqueue`` measures enqueueing
alone (no workers), for each producer count of ``--producers 1,2,4``, and the Redis
memory each pending update holds (inbox entry, wake-up message, pending index, dedup
token). ``--set NAME VALUE`` passes a setting to the redis-servers the tool
starts (e.g. ``--set hash-max-listpack-value 64``). ``cluster`` (in
``deploy/capacity_cluster.py``) measures a Redis Cluster of 1 and 3 primaries: updates/s
and Redis CPU per primary. docs/operations.md has the numbers measured with these
commands.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from motion import Component
from motion.floor import keys as K
from motion.floor import scripts
from motion.tools.producer import enqueue

NAME = "CapacityProbe"
Probe = Component(NAME)
HERE = Path(__file__).resolve().parent
TCK = os.sysconf("SC_CLK_TCK")


@Probe.init_state
def setup() -> dict[str, Any]:
    return {"n": 0, "note": ""}


@Probe.update("hit")
def hit(state: Any, props: Any) -> dict[str, Any]:
    return {"n": state["n"] + 1}


# --- Redis servers -------------------------------------------------------------------


@contextlib.contextmanager
def redis_server(settings: list[tuple[str, str]]) -> Iterator[str]:
    """A redis-server with deploy/redis.conf on a free port; yields its URL, then stops it."""
    folder = Path(tempfile.mkdtemp(prefix="motion-capacity-redis-"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = ["redis-server", str(HERE / "redis.conf"), "--port", str(port)]
    command += ["--bind", "127.0.0.1", "--dir", str(folder), "--logfile", "redis.log"]
    for name, value in settings:
        command += [f"--{name}", value]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, cwd=folder)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        client = redis.Redis.from_url(url)
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(redis.ConnectionError):
                if client.ping():
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"redis-server did not start: {(folder / 'redis.log').read_text()}")
            time.sleep(0.05)
        client.close()
        yield url
    finally:
        proc.terminate()
        proc.wait(60)
        shutil.rmtree(folder, ignore_errors=True)


def _client(url: str) -> redis.Redis:
    client = redis.Redis.from_url(url)
    if client.dbsize():
        sys.exit(f"{url} holds keys: use an empty scratch database (e.g. /15).")
    return client


def _empty(client: redis.Redis) -> None:
    """Empty the database and, with AOF on, rewrite the AOF so each run starts small."""
    client.flushdb()
    if client.info("persistence").get("aof_enabled"):
        with contextlib.suppress(redis.ResponseError):  # a rewrite is already running
            client.bgrewriteaof()
        while True:
            info = client.info("persistence")
            if not (info["aof_rewrite_in_progress"] or info["aof_rewrite_scheduled"]):
                break
            time.sleep(0.05)


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
                inc = secrets.token_hex(16)  # the instance's incarnation id
                pipe.evalsha(
                    init.sha, 4, keys.meta, keys.state, K.COMPONENTS, keys.claim, NAME, now,
                    inc, 1, "n", n, "note", note,
                )  # fmt: skip
                if settled:
                    pipe.hset(
                        keys.meta,
                        mapping={"seq": 1, "applied": 1, "version": 2, "fence": 1,
                                 "tag": f"2.{inc}.{secrets.token_hex(8)}",
                                 "applied_at": now, "last:hit": 1, "pending:hit": 0},
                    )  # fmt: skip
            pipe.execute()


# --- memory --------------------------------------------------------------------------


def memory(args: argparse.Namespace, url: str) -> None:
    """Redis memory per idle instance, at ``--instances`` instances."""
    client = _client(url)
    try:
        base = client.info("memory")["used_memory"]
        started = time.monotonic()
        _create(client, range(args.instances), args.state_bytes, settled=True)
        took = time.monotonic() - started
        used = client.info("memory")["used_memory"]
        result = {
            "instances": args.instances,
            "state_bytes": args.state_bytes,
            "used_memory_mib": round(used / 2**20, 1),
            "bytes_per_instance": round((used - base) / args.instances),
            "creates_per_s": round(args.instances / took),
        }
        print(json.dumps(result, indent=2))
    finally:
        client.flushdb()


# --- CPU accounting ------------------------------------------------------------------


def _redis_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def _tree_cpu(roots: list[int]) -> float:
    """CPU seconds of processes and all their descendants (prefork children), from /proc."""
    parent, ticks = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:  # the process ended meanwhile
                continue
            parent[int(entry.name)] = int(fields[1])
            ticks[int(entry.name)] = sum(int(x) for x in fields[11:15])  # utime .. cstime
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        total += ticks.get(pid, 0)
        todo += [child for child, p in parent.items() if p == pid]
    return total / TCK


def _machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every process, every core), from /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = Path("/proc/stat").read_text().split()[1:8]
    return sum(int(x) for x in (user, nice, system, irq, softirq)) / TCK


class PendingPeak(threading.Thread):
    """Samples ``ZCARD motion:pending`` every 100 ms and keeps the largest value."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.peak = 0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.peak = max(self.peak, int(self.client.zcard(K.PENDING)))

    def stop(self) -> int:
        self.done.set()
        self.join()
        return self.peak


@dataclass
class Servers:
    """The state Redis and, with ``--broker``, a separate broker Redis."""

    state_url: str
    broker_url: str | None

    def clients(self) -> dict[str, redis.Redis]:
        found = {"redis": redis.Redis.from_url(self.state_url)}
        if self.broker_url:
            found["broker"] = redis.Redis.from_url(self.broker_url)
        return found

    def env(self) -> dict[str, str]:
        """The environment of workers and producers: these servers, nothing inherited."""
        inherited = ("MOTION_REDIS_", "MOTION_BROKER_URL")  # point at these servers only
        env = {k: v for k, v in os.environ.items() if not k.startswith(inherited)}
        env |= {"MOTION_REDIS_URL": self.state_url, "MOTION_INPROCESS_WORKER": "0"}
        if self.broker_url:
            env["MOTION_BROKER_URL"] = self.broker_url
        env["PYTHONPATH"] = os.pathsep.join([str(HERE), env.get("PYTHONPATH", "")])
        return env


# --- processes -----------------------------------------------------------------------


def _start_workers(
    count: int, args: argparse.Namespace, servers: Servers, folder: Path
) -> list[subprocess.Popen[bytes]]:
    procs = []
    for w in range(count):
        log = folder / f"worker{w}.log"
        log.unlink(missing_ok=True)
        command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-I", "capacity"]
        command += ["-P", args.pool, "-c", str(args.concurrency), "-n", f"cap{w}@%h"]
        command += ["--without-mingle", "--without-gossip", "-l", "INFO", "-f", str(log)]
        with open(folder / f"worker{w}.out", "wb") as out:  # stderr: Celery's warnings
            procs.append(
                subprocess.Popen(
                    command, env=servers.env(), stdout=out, stderr=out, start_new_session=True
                )
            )
    deadline = time.monotonic() + 90
    for w in range(count):
        log = folder / f"worker{w}.log"
        while not (log.exists() and " ready." in log.read_text()):
            if time.monotonic() > deadline:
                _stop(procs)
                sys.exit(f"worker {w} did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.1)
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """Warm shutdown (SIGTERM); the process group is killed if it does not end in 30 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _spawn_producers(
    args: argparse.Namespace, producers: int, servers: Servers
) -> list[subprocess.Popen[str]]:
    """Start ``producers`` processes that will enqueue ``--updates`` in all, once told to.

    Each producer imports motion, says it is ready, and waits for the go: interpreter
    start-up is not measured.
    """
    per = args.updates // producers
    procs = []
    for p in range(producers):
        command = [sys.executable, __file__, "_produce", str(p), str(per), str(args.instances)]
        procs.append(
            subprocess.Popen(
                [*command, str(producers)],
                env=servers.env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    for proc in procs:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            sys.exit("a producer did not start")
    return procs


def _go(procs: list[subprocess.Popen[str]]) -> float:
    """Start the ready producers, wait for them; return their CPU seconds."""
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    cpu = 0.0
    for proc in procs:
        out, _ = proc.communicate()
        if proc.returncode:
            sys.exit(f"a producer failed (exit {proc.returncode})")
        cpu += float(out.strip().splitlines()[-1])
    return cpu


def _produce(index: int, count: int, instances: int, producers: int) -> None:
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":  # the parent gave up
        return
    cpu0 = time.process_time()
    for i in range(count):
        target = (i * producers + index) % instances
        enqueue(NAME, f"u{target}", "hit", {})
    print(time.process_time() - cpu0, flush=True)


# --- throughput and enqueue ----------------------------------------------------------


def _run(args: argparse.Namespace, servers: Servers, workers: int, producers: int) -> dict:
    """One measurement on emptied databases: ``workers`` workers (0: enqueue only)."""
    clients = servers.clients()
    state = clients["redis"]
    for client in clients.values():
        _empty(client)
    _create(state, range(args.instances), 16, settled=False)
    folder = Path(tempfile.mkdtemp(prefix="motion-capacity-"))
    procs = _start_workers(workers, args, servers, folder) if workers else []
    try:
        feeders = _spawn_producers(args, producers, servers)
        total = args.updates // producers * producers
        for client in clients.values():
            client.config_resetstat()
        redis0 = {name: _redis_cpu(client) for name, client in clients.items()}
        workers0, machine0 = _tree_cpu([p.pid for p in procs]), _machine_busy()
        own0, memory0 = time.process_time(), state.info("memory")["used_memory"]
        peak = PendingPeak(servers.state_url)
        peak.start()
        started = time.monotonic()
        producers_cpu = _go(feeders)
        enqueued = time.monotonic() - started
        held = state.info("memory")["used_memory"] - memory0  # what the pending updates hold
        while workers and int(state.hget(K.stats(NAME), "applied:hit") or 0) < total:
            if time.monotonic() - started > args.timeout:
                sys.exit(f"not all updates applied within {args.timeout}s; logs in {folder}")
            time.sleep(0.05)
        took = time.monotonic() - started
        row: dict[str, Any] = {
            "workers": workers,
            "producers": producers,
            "updates": total,
            "updates/s": round(total / took),
            "enqueue/s": round(total / enqueued),
        }
        workers_cpu = _tree_cpu([p.pid for p in procs]) - workers0
        ours = workers_cpu + producers_cpu + time.process_time() - own0
        for name, client in clients.items():
            cpu = _redis_cpu(client) - redis0[name]
            ours += cpu
            calls = sum(int(v["calls"]) for v in client.info("commandstats").values())
            row[f"{name} µs/upd"] = round(cpu / total * 1e6)
            row[f"{name} CPU"] = f"{cpu / took:.0%}"
            row[f"{name} cmds/upd"] = round(calls / total, 1)
        row["worker µs/upd"] = round(workers_cpu / total * 1e6)
        row["producer µs/upd"] = round(producers_cpu / total * 1e6)
        busy = _machine_busy() - machine0
        row["busy cores"] = f"{busy / took:.2f} of {os.cpu_count()}"
        row["others' cores"] = f"{max(busy - ours, 0) / took:.2f}"  # processes not in this run
        row["peak pending"] = peak.stop()
        if not workers:
            row["bytes/upd"] = round(held / total)
        if args.json:
            row["top_commands_per_update"] = _top_commands(state, total)
        return row
    finally:
        _stop(procs)
        shutil.rmtree(folder, ignore_errors=True)
        for client in clients.values():
            client.flushdb()


def _top_commands(client: redis.Redis, total: int) -> dict[str, Any]:
    stats = sorted(client.info("commandstats").items(), key=lambda kv: -float(kv[1]["usec"]))
    return {
        name.removeprefix("cmdstat_"): {
            "calls": round(int(v["calls"]) / total, 2),
            "us": round(float(v["usec"]) / total, 1),
        }
        for name, v in stats[:8]
    }


def _emit(row: dict[str, Any], first: bool, as_json: bool) -> None:
    """One run's row: of a Markdown table (the header before the first), or a JSON line."""
    if as_json:
        print(json.dumps(row, ensure_ascii=False), flush=True)
        return
    if first:
        print("| " + " | ".join(row) + " |")
        print("|" + " --- |" * len(row))
    print("| " + " | ".join(str(v) for v in row.values()) + " |", flush=True)


def _counts(text: str) -> list[int]:
    return [int(part) for part in text.split(",")]


def throughput(args: argparse.Namespace, servers: Servers) -> None:
    """Updates/s, Redis and worker CPU per update, for each worker count of ``--workers``."""
    print(
        f"# {args.updates} updates over {args.instances} instances, {args.producers} producers, "
        f"workers -P {args.pool} -c {args.concurrency}, broker: "
        f"{servers.broker_url or 'the state Redis'}"
    )
    for i, count in enumerate(args.workers):
        row = _run(args, servers, count, args.producers)
        for key in ("producers", "updates"):
            row.pop(key)
        _emit(row, i == 0, args.json)


def enqueue_only(args: argparse.Namespace, servers: Servers) -> None:
    """Enqueues/s and Redis CPU per enqueue, no workers, for each count of ``--producers``."""
    print(f"# {args.updates} enqueues over {args.instances} instances, no workers")
    for i, count in enumerate(args.producers):
        row = _run(args, servers, 0, count)
        for key in ("workers", "updates/s", "worker µs/upd"):
            row.pop(key)
        _emit(row, i == 0, args.json)


# --- command line --------------------------------------------------------------------


def main() -> None:
    """Command line: ``memory``, ``throughput`` or ``enqueue`` (see the module docstring)."""
    if sys.argv[1:2] == ["_produce"]:
        _produce(*(int(x) for x in sys.argv[2:6]))
        return
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--url", help="a scratch Redis database (default: start one)")
    common.add_argument(
        "--set", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"),
        help="a redis.conf setting for the redis-servers this tool starts",
    )  # fmt: skip
    load = argparse.ArgumentParser(add_help=False)
    load.add_argument("--updates", type=int, default=10_000)
    load.add_argument("--instances", type=int, default=10_000)
    load.add_argument("--json", action="store_true", help="JSON lines, with top commands")
    load.add_argument("--timeout", type=float, default=600)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    mem = sub.add_parser("memory", parents=[common], help="Redis memory per idle instance")
    mem.add_argument("--instances", type=int, default=100_000)
    mem.add_argument("--state-bytes", type=int, default=200, help="size of the state value")
    thr = sub.add_parser("throughput", parents=[common, load], help="updates/s, CPU per update")
    thr.add_argument("--workers", type=_counts, default=[2], help="worker counts, e.g. 1,2,4")
    thr.add_argument("--pool", default="threads")
    thr.add_argument("--concurrency", type=int, default=8)
    thr.add_argument("--producers", type=int, default=2)
    thr.add_argument(
        "--broker", default="same",
        help="same (the state Redis), separate (start a second redis-server) or a Redis URL",
    )  # fmt: skip
    enq = sub.add_parser("enqueue", parents=[common, load], help="enqueues/s, no workers")
    enq.add_argument("--producers", type=_counts, default=[2], help="producer counts, e.g. 1,2")
    import capacity_cluster  # the cluster subcommands (their own modules: this one is long)
    import capacity_passes

    capacity_cluster.add_parser(sub, [common, load])
    capacity_passes.add_parser(sub, [common])
    args = parser.parse_args()
    if args.what in ("cluster", "passes"):
        (capacity_cluster if args.what == "cluster" else capacity_passes).run(args)
        return
    with contextlib.ExitStack() as stack:
        url = args.url or stack.enter_context(redis_server(args.set))
        if args.what == "memory":
            memory(args, url)
            return
        broker = getattr(args, "broker", "same")
        if broker == "separate":
            broker = stack.enter_context(redis_server(args.set))
        servers = Servers(url, None if broker == "same" else broker)
        for server_url in filter(None, (servers.state_url, servers.broker_url)):
            _client(server_url).close()  # refuses a database that holds keys
        (throughput if args.what == "throughput" else enqueue_only)(args, servers)


if __name__ == "__main__":
    main()
