"""Workloads W6-W8 against this project's motion: freshness, two producers, a burst.

W6 times each update from the moment ``run`` is called to the moment its commit
is visible in Redis. It learns of commits through Redis keyspace notifications on
the instance's meta hash (turned on for W6 only), so it adds no polling load.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from typing import Any

import redis

from benchmarks.harness import HERE, ROOT, BenchError, motion_env, percentile, wait_for
from benchmarks.workloads import Checks, Config, Metrics, uid


class CommitWatcher:
    """Stamps the time each seq of one instance becomes applied (keyspace events)."""

    def __init__(self, url: str, meta_key: str, applied: Any, field: str = "applied") -> None:
        self.client = redis.Redis.from_url(url)
        self.meta_key, self.field = meta_key, field
        self.read_applied = applied
        self.seen = 0
        self.stamps: dict[int, float] = {}
        self.stop = threading.Event()
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(f"__keyspace@0__:{meta_key}")
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self.stop.is_set():
            msg = self.pubsub.get_message(timeout=0.05)
            if msg is None:
                continue
            now = time.perf_counter()
            applied = self.read_applied(self.client)
            for seq in range(self.seen + 1, applied + 1):
                self.stamps[seq] = now
            self.seen = max(self.seen, applied)

    def __enter__(self) -> CommitWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)
        self.pubsub.close()


def paced(rate: float, seconds: float, send: Any, starts: list[float] | None = None) -> list[float]:
    """Call ``send(i)`` at ``rate`` per second for ``seconds``; the start time of each call.

    The times are appended to ``starts`` as they happen, if given (and returned).
    """
    n = int(rate * seconds)
    starts = [] if starts is None else starts
    t0 = time.perf_counter()
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        starts.append(time.perf_counter())
        send(i)
    return starts


def w6_freshness(cfg: Config) -> tuple[Metrics, Checks]:
    """One instance, 200 updates/s for ``fresh_seconds``: enqueue-to-commit lag p50/p99 ms."""
    from bench_components import Counter

    from motion.floor.keys import InstanceKeys, instance_name

    handle = Counter(f"w6-{uid()}")
    handle.read_state("n")
    meta = InstanceKeys.of(instance_name("BenchCounter", handle.instance_id)).meta
    client = redis.Redis.from_url(cfg.url)
    client.config_set("notify-keyspace-events", "Kh")
    try:
        with CommitWatcher(cfg.url, meta, lambda c: int(c.hget(meta, "applied") or 0)) as watch:
            starts = paced(200, cfg.fresh_seconds, lambda i: handle.run("add", {"i": i}))
            handle.flush_update(timeout=60)
            wait_for(lambda: watch.seen >= len(starts), 10, "the last commit notification")
    finally:
        client.config_set("notify-keyspace-events", "")
    lags = [(watch.stamps[i + 1] - t) * 1000 for i, t in enumerate(starts)]
    checks = [_counter_check(handle, len(starts), "W6 every update applied in order")]
    raw, raw_check = celery_latency(cfg)
    metrics = {"W6.p50": percentile(lags, 50), "W6.p99": percentile(lags, 99)}
    metrics |= {"W0.celery_lat.p50": percentile(raw, 50), "W0.celery_lat.p99": percentile(raw, 99)}
    return metrics, [*checks, raw_check]


def celery_latency(cfg: Config) -> tuple[list[float], tuple[str, bool, str]]:
    """W6's floor: raw Celery no-op tasks at the same pace, same worker and queues;
    ms from ``send_task`` to the task starting."""
    from motion.floor.celery_app import get_app, task_queue
    from motion.floor.wakeup import queues_of

    app = get_app()
    queue = task_queue(queues_of("BenchCounter")[0])
    key = f"bench:latency:{uid()}"
    sent = paced(
        200,
        cfg.fresh_seconds,
        lambda i: app.send_task("bench.stamp", args=[key, time.time()], queue=queue),
    )
    client = redis.Redis.from_url(cfg.url)
    wait_for(lambda: client.llen(key) >= len(sent), 30, "the raw Celery tasks to run")
    lags = [float(x) * 1000 for x in client.lrange(key, 0, -1)]
    client.delete(key)
    return lags, ("W0 every raw Celery latency task ran", len(lags) == len(sent), f"{len(lags)}")


def _counter_check(handle: Any, expected: int, what: str) -> tuple[str, bool, str]:
    n, bad = handle.read_state("n"), handle.read_state("violations")
    return (what, n == expected and bad == 0, f"applied {n}/{expected}, order violations {bad}")


def w7_producers(cfg: Config) -> tuple[Metrics, Checks]:
    """Two producer processes on one instance: per-producer order, and the count."""
    from bench_components import Counter

    handle = Counter(f"w7-{uid()}")
    handle.read_state("n")
    client = redis.Redis.from_url(cfg.url)
    go = f"bench:go:{handle.instance_id}"
    env = motion_env(cfg.url)
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / "producer.py"),
                name,
                str(cfg.n_producer),
                handle.instance_id,
                go,
            ],
            env=env,
            cwd=str(ROOT),
        )
        for name in ("A", "B")
    ]
    ready = [f"{go}:ready:{name}" for name in ("A", "B")]
    wait_for(lambda: client.exists(*ready) == 2, 60, "both producers to start")
    start = time.perf_counter()
    client.set(go, 1, ex=600)
    for proc in procs:
        if proc.wait(120) != 0:
            raise BenchError(f"a W7 producer exited with {proc.returncode}")
    handle.flush_update(timeout=120)
    elapsed = time.perf_counter() - start
    total = 2 * cfg.n_producer
    n, bad = handle.read_state("n"), handle.read_state("violations")
    last = handle.read_state("last")
    checks = [
        ("W7 count: every update applied once", n == total, f"{n}/{total}"),
        ("W7 zero per-producer order violations", bad == 0, f"{bad} violations"),
        (
            "W7 each producer's last update applied last",
            last == {"A": cfg.n_producer - 1, "B": cfg.n_producer - 1},
            f"{last}",
        ),
    ]
    return {
        "W7.violations": float(bad),
        "W7.lost": float(total - n),
        "W7.ups": total / elapsed,
    }, checks


def w8_burst(cfg: Config) -> tuple[Metrics, Checks]:
    """A burst 10x over capacity, with NUM_NEW_UPDATES and with batch=True."""
    metrics: Metrics = {}
    checks: Checks = []
    for flow, label in (("keep_newest", "keep"), ("batched", "batch")):
        m, c = _burst(cfg, flow, label)
        metrics.update(m)
        checks += c
    return metrics, checks


class LagSampler:
    """Every 0.25 s: how old is the newest update the state shows (``last_i``)?"""

    def __init__(self, read_last: Any, starts: list[float]) -> None:
        self.read_last, self.starts = read_last, starts
        self.samples: list[tuple[float, float]] = []  # (seconds into the burst, lag ms)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        t0 = time.perf_counter()
        while not self.stop.wait(0.25):
            last = self.read_last()
            now = time.perf_counter()
            if 0 <= last < len(self.starts):
                self.samples.append((now - t0, (now - self.starts[last]) * 1000))

    def __enter__(self) -> LagSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(5)

    def summary(self, prefix: str, seconds: float) -> Metrics:
        """Max lag in each half of the burst, and the last lag seen."""
        first = [lag for t, lag in self.samples if t <= seconds / 2]
        second = [lag for t, lag in self.samples if t > seconds / 2]
        return {
            f"{prefix}.lag_first_half": max(first, default=float("nan")),
            f"{prefix}.lag_second_half": max(second, default=float("nan")),
            f"{prefix}.lag_end": self.samples[-1][1] if self.samples else float("nan"),
        }


def _burst(cfg: Config, flow: str, label: str) -> tuple[Metrics, Checks]:
    from bench_components import BURST_OP_SECONDS, Burst

    rate = 10 / BURST_OP_SECONDS  # ten times what one instance applies per second
    client = redis.Redis.from_url(cfg.url)
    handle = Burst(f"w8-{flow}-{uid()}")
    handle.read_state("calls")
    before = _stats(client, flow)
    reader = Burst(handle.instance_id)
    starts: list[float] = []
    with LagSampler(lambda: reader.read_state("last_i"), starts) as sampler:
        paced(rate, cfg.burst_seconds, lambda i: handle.run(flow, {"i": i}), starts)
    burst_end = time.perf_counter()
    handle.flush_update(timeout=120)
    drain = time.perf_counter() - burst_end
    after = _stats(client, flow)
    n = len(starts)
    calls = after["calls"] - before["calls"]
    done = (after["applied"] - before["applied"]) + (after["discarded"] - before["discarded"])
    metrics = {
        f"W8.{label}.rate": n / (burst_end - starts[0]),
        f"W8.{label}.drain": drain,
        f"W8.{label}.calls_per_update": calls / n,
        **sampler.summary(f"W8.{label}", cfg.burst_seconds),
    }
    state_calls, bad = handle.read_state("calls"), handle.read_state("violations")
    checks = [
        (f"W8 {label}: every update applied or discarded", done == n, f"{done}/{n}"),
        (
            f"W8 {label}: op calls counted twice agree",
            state_calls == calls,
            f"{state_calls} vs {calls}",
        ),
        (f"W8 {label}: applied in order", bad == 0, f"{bad} violations"),
        (f"W8 {label}: the last update was applied", handle.read_state("last_i") == n - 1, ""),
    ]
    return metrics, checks


def _stats(client: redis.Redis, flow: str) -> dict[str, int]:
    raw = client.hgetall("motion:stats:BenchBurst")
    return {
        name: int(raw.get(f"{name}:{flow}".encode(), 0))
        for name in ("applied", "discarded", "calls", "failed")
    }
