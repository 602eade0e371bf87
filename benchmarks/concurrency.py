"""W10 (LLM-scale concurrency) and W11 (Redis cost per update) against this project's motion.

W10: ``n_wide_llm`` instances, one update each, of an op that waits
``wide_llm_seconds`` (an ``async def`` op awaiting ``asyncio.sleep``, or a sync op
calling ``time.sleep`` under the gevent pool). The clock runs from the first
enqueue to the last commit (the instances' ``applied_at``); the ideal is the wait
plus the time the caller took to enqueue. The worker is whatever ``__main__`` started
for the variant (one process); its resident memory is sampled while the ops run.

W11: ``n_cost`` instances x 5 updates from ``cost_producers`` processes, each cycling
through the instances (``wide_producer.py``), task events on (motion's default).
Redis CPU (``INFO cpu``) and Redis commands (``INFO stats`` and ``commandstats``)
from just before the start signal to the last acknowledgement, per applied update;
the same for raw Celery no-op tasks sent the same way (the reference).
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import threading
import time
from collections import Counter as CommandCounter
from typing import Any

import redis

from benchmarks.harness import HERE, ROOT, RUNNING, BenchError, motion_env, rss_mb, wait_for
from benchmarks.workloads import Checks, Config, Metrics, uid

W11_PER = 5  # updates per W11 instance


# -- W10 -------------------------------------------------------------------------------
def _applied(client: redis.Redis, metas: list[str]) -> list[int]:
    pipe = client.pipeline(transaction=False)
    for meta in metas:
        pipe.hget(meta, "applied")
    return [int(v or 0) for v in pipe.execute()]


def wide_llm(cfg: Config, component: Any, flow: str, prefix: str) -> tuple[Metrics, Checks]:
    """One update per instance of ``component.flow``; wall, ideal and worker RSS."""
    from motion.floor.keys import InstanceKeys, instance_name

    client = redis.Redis.from_url(cfg.url)
    ids = [f"w10-{uid()}-{k}" for k in range(cfg.n_wide_llm)]
    handles = [component(iid) for iid in ids]
    for h in handles:
        h.read_state("n")  # create outside the timing
    metas = [InstanceKeys.of(instance_name(component.name, iid)).meta for iid in ids]
    pids = [pid for worker in RUNNING for pid in worker.pids]
    stats_key = f"motion:stats:{component.name}"
    failed_before = int(client.hget(stats_key, f"failed:{flow}") or 0)
    rss, clients = rss_mb(pids), 0
    wall, start = time.time(), time.perf_counter()
    for h in handles:
        h.run(flow, {"i": 0, "s": cfg.wide_llm_seconds})
    enqueue = time.perf_counter() - start
    deadline = start + max(60.0, 40 * cfg.wide_llm_seconds) + 2 * enqueue
    done = 0
    while time.perf_counter() < deadline:
        rss = max(rss, rss_mb(pids))
        clients = max(clients, int(client.info("clients")["connected_clients"]))
        done = sum(1 for a in _applied(client, metas) if a >= 1)
        if done == len(ids):
            break
        time.sleep(0.05)
    ideal = cfg.wide_llm_seconds + enqueue
    metrics = {
        f"W10.{prefix}.ideal": ideal,
        f"W10.{prefix}.enqueue": enqueue,
        f"W10.{prefix}.rss_mb": rss,
        f"W10.{prefix}.clients": float(clients),
        f"W10.{prefix}.n": float(len(ids)),
    }
    failed = int(client.hget(stats_key, f"failed:{flow}") or 0) - failed_before
    if done == len(ids) and not failed:
        from benchmarks.workloads import last_commit

        elapsed = last_commit(cfg, component.name, ids) - wall
        metrics[f"W10.{prefix}.wall"] = elapsed
        metrics[f"W10.{prefix}.ratio"] = elapsed / ideal
    sample = handles[:: max(1, len(handles) // 50)]
    bad = [h for h in sample if h.read_state("n") != 1 or h.read_state("violations") != 0]
    checks = [
        (
            f"W10 {prefix}: every instance applied its update within {deadline - start:.0f} s",
            done == len(ids),
            f"{done}/{len(ids)}",
        ),
        (f"W10 {prefix}: no update failed", not failed, f"{failed} failed"),
        (f"W10 {prefix}: sampled states show exactly one update", not bad, f"{len(bad)} wrong"),
    ]
    return metrics, checks


def w10_async(cfg: Config) -> tuple[Metrics, Checks]:
    """W10 with an ``async def`` op (on the worker ``__main__`` started: threads)."""
    from bench_components import Await

    return wide_llm(cfg, Await, "ask", "async")


def w10_async_threads(cfg: Config) -> tuple[Metrics, Checks]:
    """W10 with the ``async def`` op on a thread per instance (``-P threads -c N``)."""
    from bench_components import Await

    return wide_llm(cfg, Await, "ask", "async_threads")


def w10_gevent(cfg: Config) -> tuple[Metrics, Checks]:
    """W10 with a sync op sleeping, under ``-P gevent``."""
    from bench_components import Sleep

    return wide_llm(cfg, Sleep, "ask", "gevent")


def w10_async_gevent(cfg: Config) -> tuple[Metrics, Checks]:
    """W10 with the ``async def`` op under ``-P gevent`` (one event loop per greenlet)."""
    from bench_components import Await

    return wide_llm(cfg, Await, "ask", "async_gevent")


# -- W11 -------------------------------------------------------------------------------
def _snapshot(client: redis.Redis) -> dict[str, Any]:
    cpu, stats = client.info("cpu"), client.info("stats")
    commands = client.info("commandstats")
    return {
        "cpu": float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
        "cpu_main": float(cpu.get("used_cpu_sys_main_thread", 0))
        + float(cpu.get("used_cpu_user_main_thread", 0)),
        "processed": int(stats["total_commands_processed"]),
        "commands": {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in commands.items()},
    }


def _create(client: redis.Redis, prefix: str, n: int) -> None:
    """``n`` BenchWide instances at their initial state, pipelining the ``init`` script."""
    from bench_components import Wide

    from motion.floor import keys as K
    from motion.floor import scripts, store

    sha = client.script_load(scripts.get("init").source)
    state = {"n": 0, "last": {}, "violations": 0}
    for lo in range(0, n, 2000):
        pipe = client.pipeline(transaction=False)
        for k in range(lo, min(lo + 2000, n)):
            iid = f"{prefix}-{k}"
            ik = K.InstanceKeys.of(K.instance_name(Wide.name, iid))
            args = store.init_args(Wide, iid, state, store.new_incarnation())
            pipe.evalsha(sha, 4, ik.meta, ik.state, K.COMPONENTS, ik.claim, *args)
        created = [reply[0] for reply in pipe.execute()]
        if sum(created) != len(created):
            raise BenchError(f"W11: {len(created) - sum(created)} instances existed already")


def _producers(cfg: Config, kind: str, total: int, prefix: str) -> tuple[list[Any], str]:
    client = redis.Redis.from_url(cfg.url)
    go = f"bench:go:{prefix}"
    tail = [str(cfg.cost_producers), str(cfg.n_cost), str(total), prefix, go]
    procs = [
        subprocess.Popen(
            [sys.executable, str(HERE / "wide_producer.py"), kind, str(p), *tail],
            env=motion_env(cfg.url),
            cwd=str(ROOT),
        )
        for p in range(cfg.cost_producers)
    ]
    ready = [f"{go}:ready:{p}" for p in range(cfg.cost_producers)]
    wait_for(lambda: client.exists(*ready) == len(ready), 120, "the W11 producers to start")
    return procs, go


def _idle(client: redis.Redis) -> bool:
    from motion.floor.wakeup import queues_of

    pipe = client.pipeline(transaction=False)
    for q in queues_of("BenchWide"):
        pipe.llen(q)
    pipe.hlen("unacked")
    return not any(pipe.execute())


def _measure(cfg: Config, kind: str, total: int, prefix: str, done: Any) -> dict[str, float]:
    """Start the producers, wait for ``done()`` and an idle broker; Redis deltas per item."""
    client = redis.Redis.from_url(cfg.url)
    procs, go = _producers(cfg, kind, total, prefix)
    # the workload before (W12's 10,000 timers all due at once) may leave its worker
    # minutes of wake-ups to work through (each a drain finding nothing)
    wait_for(lambda: _idle(client), 600, "an idle broker before W11")
    own = 1 + 3  # the benchmark's own commands: the start signal, the last INFOs
    check_cost = 1 if kind == "motion" else 0  # done(): one HGET

    def finished() -> bool:
        nonlocal own
        own += check_cost
        if not done(client):
            return False
        own += len(_queues()) + 1
        return _idle(client)

    before = _snapshot(client)
    start = time.perf_counter()
    client.set(go, 1, ex=600)
    for proc in procs:
        if proc.wait(600) != 0:
            raise BenchError(f"a W11 producer exited with {proc.returncode}")
    wait_for(finished, 300, f"W11 ({kind}) to be applied and acknowledged", interval=0.05)
    elapsed = time.perf_counter() - start
    after = _snapshot(client)
    by_command = {
        name: calls - before["commands"].get(name, 0)
        for name, calls in after["commands"].items()
        if calls > before["commands"].get(name, 0)
    }
    return {
        "cpu_us": (after["cpu"] - before["cpu"]) * 1e6 / total,
        "cpu_main_us": (after["cpu_main"] - before["cpu_main"]) * 1e6 / total,
        "cmds": (after["processed"] - before["processed"] - own) / total,
        "cmdstats": (sum(by_command.values()) - own) / total,
        "evalsha": by_command.get("evalsha", 0) / total,
        "publish": by_command.get("publish", 0) / total,
        "rate": total / elapsed,
    }


def _queues() -> list[str]:
    from motion.floor.wakeup import queues_of

    return queues_of("BenchWide")


class Monitor:
    """The commands clients send while it runs (``MONITOR``), by name; a script's own
    commands (``[0 lua]``) counted apart. MONITOR slows Redis: counts only, no timing."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.sent: CommandCounter[str] = CommandCounter()
        self.in_scripts: CommandCounter[str] = CommandCounter()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        with self.client.monitor() as monitor:
            self.ready.set()
            for command in monitor.listen():
                name = command["command"].split(" ", 1)[0].upper()
                if name == "ECHO" and "end-of-monitor" in command["command"]:
                    return
                lua = command.get("client_type") == "lua" or command["client_address"] == "lua"
                (self.in_scripts if lua else self.sent)[name] += 1

    def __enter__(self) -> Monitor:
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc: object) -> None:
        self.client.echo("end-of-monitor")
        self.thread.join(30)


def _round_trips(cfg: Config, kind: str, total: int, prefix: str, done: Any) -> Metrics:
    """Commands clients sent per item (``W11.rt.*``), from a MONITOR of a smaller run."""
    with Monitor(cfg.url) as watch:
        _measure(cfg, kind, total, prefix, done)
    # the benchmark's own polls are HGET / LLEN / HLEN / INFO / SET / EXISTS: left out
    own = {"INFO", "LLEN", "HLEN", "EXISTS", "ECHO", "HELLO", "CLIENT"}
    sent = {k: v for k, v in watch.sent.items() if k not in own}
    out = {f"rt.{k}": v / total for k, v in sent.items()}
    out["round_trips"] = sum(sent.values()) / total
    out["in_scripts"] = sum(watch.in_scripts.values()) / total
    out |= {f"lua.{k}": v / total for k, v in watch.in_scripts.items()}
    return out


def w11_cost(cfg: Config) -> tuple[Metrics, Checks]:
    """Redis CPU and commands per applied update, and per raw Celery no-op task."""
    from motion.floor.keys import InstanceKeys, instance_name

    client = redis.Redis.from_url(cfg.url)
    prefix = f"w11-{uid()}"
    _create(client, prefix, cfg.n_cost)
    total = cfg.n_cost * W11_PER
    stats_key, field = "motion:stats:BenchWide", "applied:add"
    first = int(client.hget(stats_key, field) or 0)

    def applied(c: redis.Redis) -> bool:
        return int(c.hget(stats_key, field) or 0) - first >= total

    motion_cost = _measure(cfg, "motion", total, prefix, applied)
    raw = _measure(cfg, "celery", cfg.n_cost_tasks, f"w11c-{uid()}", lambda c: True)
    # the commands behind those figures: a MONITOR of a run a tenth the size
    small = dataclasses.replace(cfg, n_cost=max(40, cfg.n_cost // 10))
    small_prefix = f"w11m-{uid()}"
    _create(client, small_prefix, small.n_cost)
    first_small = int(client.hget(stats_key, field) or 0)
    small_total = small.n_cost * W11_PER

    def small_applied(c: redis.Redis) -> bool:
        return int(c.hget(stats_key, field) or 0) - first_small >= small_total

    motion_cost |= _round_trips(small, "motion", small_total, small_prefix, small_applied)
    raw |= _round_trips(small, "celery", small_total // 5, f"w11n-{uid()}", lambda c: True)
    metas = [
        InstanceKeys.of(instance_name("BenchWide", f"{prefix}-{k}")).meta for k in range(cfg.n_cost)
    ]
    wrong = sum(1 for a in _applied(client, metas) if a != W11_PER)
    from bench_components import Wide

    sample = [Wide(f"{prefix}-{k}") for k in range(0, cfg.n_cost, max(1, cfg.n_cost // 50))]
    bad = sum(1 for h in sample if h.read_state("violations") or h.read_state("n") != W11_PER)
    checks = [
        (f"W11 every instance applied its {W11_PER} updates", wrong == 0, f"{wrong} wrong"),
        ("W11 sampled instances: per-producer order kept", bad == 0, f"{bad} wrong"),
    ]
    metrics = {f"W11.{k}": v for k, v in motion_cost.items()}
    metrics |= {f"W0.cost.{k}": v for k, v in raw.items()}
    return metrics, checks
