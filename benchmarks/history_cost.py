"""W9 with history: what ``Component(history=K)`` costs Redis, on against off, in one run.

Three components differ only in ``history`` (the default 20, and 0) and
``retain_updates`` (20, with history 0: what ``motion replay`` needs). For each, the
same instances get the same updates (K + 5 each, so the history list is full and
trimmed), one update per commit as a slow LLM update commits: each round enqueues one
update per instance (the ``enqueue`` script, no wake-up: nothing else runs) and drains
it in this process (:func:`motion.worker.engine.drain`: ``begin``, then one
``commit``). Measured: Redis CPU (``used_cpu_user`` + ``used_cpu_sys``), commands
(``total_commands_processed``, counting the commands scripts run) and wall time per
update, the two variants taking turns round by round (so load on the shared machine
falls on both alike); and, at the end, the exact ``MEMORY USAGE`` of the keys of 100
of the instances (state, meta, history).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from benchmarks.harness import BenchError
from benchmarks.workloads import Checks, Config, Metrics

#: a state value of a realistic prompt-summary size (the history copies it per version)
NOTE = "x" * 200


def _cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _bytes_each(client: redis.Redis, component: Any, ids: list[str]) -> float:
    """Mean ``MEMORY USAGE`` (exact: ``SAMPLES 0``) of an instance's keys."""
    from motion.floor import keys as K

    total = 0
    for i in ids:
        for key in K.InstanceKeys.of(K.instance_name(component.name, i)).all():
            total += int(client.memory_usage(key, samples=0) or 0)
    return total / len(ids)


def _create(client: redis.Redis, component: Any, ids: list[str]) -> None:
    from motion.floor import keys as K
    from motion.floor import scripts, store

    for i in ids:
        keys = K.InstanceKeys.of(K.instance_name(component.name, i))
        args = store.init_args(component, i, {"n": 0, "note": ""}, store.new_incarnation())
        scripts.run(client, "init", [keys.meta, keys.state, K.COMPONENTS, keys.claim], args)


def _round(client: redis.Redis, component: Any, ids: list[str], r: int) -> tuple[float, int, float]:
    """One update per instance, each enqueued and drained: Redis CPU s, commands, wall s."""
    from motion.floor import keys as K
    from motion.floor import scripts
    from motion.floor.inbox import Update, encode, enqueue_call
    from motion.worker.engine import drain

    commands = int(client.info("stats")["total_commands_processed"])
    cpu = _cpu(client)
    start = time.perf_counter()
    for i in ids:
        name = K.instance_name(component.name, i)
        entry = encode(component, name, Update("add", {"note": f"{r}{NOTE}"}))
        script_keys, args = enqueue_call(K.InstanceKeys.of(name), entry, "add")
        scripts.run(client, "enqueue", script_keys, args)
        report = drain(component, i)
        if report.applied != 1:
            raise BenchError(f"W9H: {name} round {r}: {report.as_dict()}")
    wall = time.perf_counter() - start
    # (the two INFO calls are 2 commands of the count)
    used = int(client.info("stats")["total_commands_processed"]) - commands - 2
    return _cpu(client) - cpu, used, wall


def w9_history(cfg: Config) -> tuple[Metrics, Checks]:
    """History on (K = 20), off, and retain_updates=20: memory per instance, Redis CPU and
    commands per update."""
    from bench_components import HistoryOff, HistoryOn, Retaining

    from motion.floor import keys as K
    from motion.floor.history import read_history, read_retained

    client = redis.Redis.from_url(cfg.url)
    instances = 200 if cfg.quick else 2000
    rounds = HistoryOn.history + 5
    ids = [f"h{i:05d}" for i in range(instances)]
    variants = (("off", HistoryOff), ("on", HistoryOn), ("retain", Retaining))
    for _, component in variants:
        _create(client, component, ids)
    totals = {label: [0.0, 0, 0.0] for label, _ in variants}
    for r in range(rounds):  # in turns, so load on the machine falls on both alike
        for label, component in variants[r % 3 :] + variants[: r % 3]:
            cpu, commands, wall = _round(client, component, ids, r)
            totals[label][0] += cpu
            totals[label][1] += commands
            totals[label][2] += wall
    metrics: Metrics = {}
    updates = instances * rounds
    for label, _ in variants:
        cpu, commands, wall = totals[label]
        metrics[f"W9h.{label}.bytes"] = _bytes_each(client, dict(variants)[label], ids[:100])
        metrics[f"W9h.{label}.cpu_us"] = cpu * 1e6 / updates
        metrics[f"W9h.{label}.cmds"] = commands / updates
        metrics[f"W9h.{label}.ms"] = wall * 1000 / updates
    name = K.instance_name(HistoryOn.name, "h00000")
    kept = read_history(client, name)
    metrics["W9h.extra.bytes"] = metrics["W9h.on.bytes"] - metrics["W9h.off.bytes"]
    metrics["W9h.extra.cpu_us"] = metrics["W9h.on.cpu_us"] - metrics["W9h.off.cpu_us"]
    retained = read_retained(client, K.instance_name(Retaining.name, "h00000"))
    count = len(retained.updates) if retained else 0
    checks: Checks = [
        (
            "W9H: retain_updates=20 keeps between 20 and 40 updates",
            20 <= count <= 40,
            f"kept {count}",
        ),
        (
            f"W9h: history keeps K = {HistoryOn.history} versions after {rounds} updates",
            [r.version for r in kept]
            == list(range(rounds + 1, rounds + 1 - HistoryOn.history, -1)),
            f"kept {[r.version for r in kept][:3]}...",
        ),
        (
            "W9h: history off keeps none",
            not client.exists(
                K.InstanceKeys.of(K.instance_name(HistoryOff.name, "h00000")).history
            ),
            "",
        ),
    ]
    return metrics, checks
