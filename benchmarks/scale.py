"""W9: many idle instances: Redis memory per instance, and the cost of a sweeper pass.

Instances are created the way the first ``run`` of a handle creates them (the
``init`` script with the component's initial state), pipelined 5,000 at a time.
The sweeper pass runs over 1,000 instances made pending long enough ago, with a
wake-up sender that only counts, so the pass measures Redis work and the
sweeper's own code.
"""

from __future__ import annotations

import time
from typing import Any

import redis

from benchmarks.harness import BenchError, median
from benchmarks.workloads import Checks, Config, Metrics

CHUNK = 5000
PENDING = 1000
#: skip growing to the next size when the estimate says it would take longer than this
BUDGET_SECONDS = 150.0


def _create(client: redis.Redis, first: int, last: int) -> None:
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.floor import scripts, store

    sha = client.script_load(scripts.get("init").source)
    # [component, now, incarnation, version, field, value]: each instance gets its own
    # incarnation
    component, now, _, version, *fields = store.init_args(
        Idle, "x", {"n": 0}, store.new_incarnation()
    )
    for lo in range(first, last, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(lo + CHUNK, last)):
            ik = K.InstanceKeys.of(K.instance_name(Idle.name, f"i{i:07d}"))
            args = [component, now, store.new_incarnation(), version, *fields]
            pipe.evalsha(sha, 4, ik.meta, ik.state, K.COMPONENTS, ik.claim, *args)
        created = [reply[0] for reply in pipe.execute()]
        if sum(created) != len(created):
            raise BenchError(f"W9: {len(created) - sum(created)} instances existed already")


def _used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def _sweep_cost(client: redis.Redis, count: int, reps: int) -> tuple[float, list[str]]:
    """Median ms of one sweeper pass with ``PENDING`` of ``count`` instances pending."""
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.worker.sweeper import sweep_once

    step = max(1, count // PENDING)
    names = [K.instance_name(Idle.name, f"i{i:07d}") for i in range(0, count, step)][:PENDING]
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hset(K.InstanceKeys.of(name).meta, "seq", 1)  # one update not applied
    pipe.execute()
    times, problems = [], []
    for _ in range(reps):
        old = int(time.time() * 1000) - 3_600_000
        client.zadd(K.PENDING, {name: old for name in names})
        client.zadd(K.SWEEP, {name: old for name in names})
        sent: list[Any] = []
        start = time.perf_counter()
        sweep_once(client, lambda *a, out=sent: out.append(a))
        times.append((time.perf_counter() - start) * 1000)
        if len(sent) != len(names):
            problems.append(f"sent {len(sent)} wake-ups for {len(names)} pending")
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hset(K.InstanceKeys.of(name).meta, "seq", 0)
        pipe.hdel(K.InstanceKeys.of(name).meta, "wake", "sweeps")
    pipe.zrem(K.PENDING, *names)
    pipe.zrem(K.SWEEP, *names)
    pipe.execute()
    return median(times), problems


def w9_scale(cfg: Config) -> tuple[Metrics, Checks]:
    """Idle instances at each size of ``cfg.scale_sizes``: bytes each, sweeper pass ms."""
    from bench_components import Idle

    client = redis.Redis.from_url(cfg.url)
    client.config_set("appendonly", "no")  # no AOF rewrite forks during the bulk load
    metrics: Metrics = {}
    checks: Checks = []
    try:
        base_mem, base_keys = _used_memory(client), client.dbsize()
        made, seconds_per = 0, 0.0
        for size in cfg.scale_sizes:
            label = f"{size // 1000}k"
            estimate = (size - made) * seconds_per
            if made and estimate > BUDGET_SECONDS:
                checks.append((f"W9 {label}: skipped", True, f"would take ~{estimate:.0f} s"))
                continue
            start = time.perf_counter()
            _create(client, made, size)
            seconds_per = (time.perf_counter() - start) / (size - made)
            made = size
            keys = client.dbsize() - base_keys
            metrics[f"W9.{label}.bytes"] = (_used_memory(client) - base_mem) / size
            metrics[f"W9.{label}.create_per_s"] = 1 / seconds_per
            cost, problems = _sweep_cost(client, size, cfg.reps)
            metrics[f"W9.{label}.sweep_ms"] = cost
            handle = Idle(f"i{size - 1:07d}")
            checks += [
                (
                    f"W9 {label}: two keys per instance (give or take expiring leases, locks)",
                    abs(keys - 2 * size) <= 10,
                    f"{keys} new keys",
                ),
                (
                    f"W9 {label}: a handle reads a bulk-created instance",
                    handle.read_state("n") == 0 and handle.get_version() == 1,
                    "",
                ),
                (
                    f"W9 {label}: the sweeper woke every pending instance",
                    not problems,
                    "; ".join(problems),
                ),
            ]
    finally:
        client.config_set("appendonly", "yes")
    return metrics, checks
