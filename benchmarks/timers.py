"""W12T: a firer pass with 100,000 and 1,000,000 timers pending (O(due), not O(timers)).

Each instance holds one submitted update not due for an hour (``submit(delay=3600)``),
parked as a worker's drain parks it. Populated in pipelines of :data:`CHUNK` (AOF off
meanwhile), per instance: the ``init`` script (as a handle's first ``run``), the
``enqueue`` script with the delay (as ``submit(delay=...)``, without its wake-up: no
worker runs), then what the drain's ``begin`` + ``commit`` write when they park a timer
not yet due, written directly (a drain per instance would take hours here): in the meta
``applied`` and ``fence`` = 1, ``parked:add`` = 1, ``applied_at``, ``committed`` (the
commit's nonce), no ``wake``; the
``parked`` member ``1:add``; the ``timers`` entry ``add -> due``; the instance in the due
index (:func:`motion.floor.keys.timers_index`) scored ``due``; out of ``motion:pending``
and ``motion:sweep``. A check compares one populated instance with one parked by the
real drain (:func:`motion.worker.engine.drain`), key by key.

Measured at each size, with the real :func:`motion.worker.firer.fire_once` (no worker
runs, so no other firer claims anything): (a) a pass with none due (the ``fire``
script, and the ``ZRANGE 0 0`` of the index); (b) a pass with :data:`DUE` of them due
(rescored into the past, spread over the index): two ``fire`` calls of 500, the
``wake`` scripts and the wake-up pushes, one pipeline each. Between repeats the due ones
are rescored an hour ahead, their ``wake`` field cleared and the wake-up queues emptied.
Each pass is timed on the wall clock (the firer's Python and Redis together) and by the
Redis CPU it took (``INFO cpu``, user + sys). Also Redis ``used_memory`` per instance
with a pending timer, and the exact ``MEMORY USAGE`` of the timer's own part (its inbox
entry, ``parked``, ``timers``, its share of the due index).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from benchmarks.harness import BenchError, median
from benchmarks.workloads import Checks, Config, Metrics

CHUNK = 5000
DUE = 1000
DELAY_MS = 3_600_000
FLOW = "add"


def _redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _cpu(client: redis.Redis) -> float:
    """Redis' CPU seconds so far (``used_cpu_user`` + ``used_cpu_sys``)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _name(i: int) -> str:
    from bench_components import Idle

    from motion.floor import keys as K

    return K.instance_name(Idle.name, f"t{i:07d}")


def _park(pipe: Any, name: str, due: int, now: int) -> None:
    """What the drain writes when it parks update 1 (a timer not due) of ``name``."""
    from motion.floor import keys as K

    ik = K.InstanceKeys.of(name)
    meta = {"applied": 1, "fence": 1, f"parked:{FLOW}": 1, "applied_at": now}
    pipe.hset(ik.meta, mapping={**meta, "committed": "0" * 16})  # (a nonce's length)
    pipe.hdel(ik.meta, "wake")
    pipe.zadd(ik.parked, {f"1:{FLOW}": 1})
    pipe.zadd(ik.timers, {FLOW: due})
    pipe.zadd(K.timers_index(name), {name: due})
    pipe.zrem(K.part(K.PENDING, name), name)
    pipe.zrem(K.part(K.SWEEP, name), name)


def _populate(client: redis.Redis, first: int, last: int) -> None:
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.floor import scripts, store
    from motion.floor.inbox import Update, encode, enqueue_call

    init_sha = client.script_load(scripts.get("init").source)
    enqueue_sha = client.script_load(scripts.get("enqueue").source)
    component, now_arg, _, version, *fields = store.init_args(
        Idle, "x", {"n": 0}, store.new_incarnation()
    )
    for lo in range(first, last, CHUNK):
        names = [_name(i) for i in range(lo, min(lo + CHUNK, last))]
        pipe = client.pipeline(transaction=False)
        for name in names:
            ik = K.InstanceKeys.of(name)
            args = [component, now_arg, store.new_incarnation(), version, *fields]
            pipe.evalsha(init_sha, 4, ik.meta, ik.state, K.COMPONENTS, ik.claim, *args)
        if sum(reply[0] for reply in pipe.execute()) != len(names):
            raise BenchError("W12T: instances existed already")
        now = _redis_ms(client)
        pipe = client.pipeline(transaction=False)
        for name in names:
            entry = encode(Idle, name, Update(FLOW, {"i": 0}))
            keys, args = enqueue_call(K.InstanceKeys.of(name), entry, FLOW, delay_ms=DELAY_MS)
            pipe.evalsha(enqueue_sha, len(keys), *keys, *args)
        if any(int(reply[0]) != 1 for reply in pipe.execute()):
            raise BenchError("W12T: an enqueue did not get seq 1")
        pipe = client.pipeline(transaction=False)
        for name in names:
            _park(pipe, name, now + DELAY_MS, now)
        pipe.execute()


def _reference(client: redis.Redis) -> list[str]:
    """Differences between an instance parked by the real drain and a populated one."""
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.worker.engine import drain

    real, made = Idle("tref"), _name(9_999_999)
    real.submit(FLOW, {"i": 0}, delay=DELAY_MS / 1000)
    if drain(Idle, "tref").applied != 0:
        return ["the drain applied the timer instead of parking it"]
    _populate_one(client, made)
    problems = []
    a, b = K.InstanceKeys.of(real.instance_name), K.InstanceKeys.of(made)
    for field in ("parked", "timers"):
        ra = client.zrange(getattr(a, field), 0, -1)
        rb = client.zrange(getattr(b, field), 0, -1)
        if ra != rb:
            problems.append(f"{field}: drain {ra} populated {rb}")
    ma, mb = client.hgetall(a.meta), client.hgetall(b.meta)
    if set(ma) != set(mb):
        problems.append(f"meta fields: drain {sorted(ma)} populated {sorted(mb)}")
    for name in (real.instance_name, made):
        index = client.zscore(K.timers_index(name), name)
        if index is None or client.zscore(K.part(K.PENDING, name), name) is not None:
            problems.append(f"{name}: not in the due index, or still pending")
    for name in (real.instance_name, made):  # neither stays: the sizes count only theirs
        ik = K.InstanceKeys.of(name)
        client.delete(*ik.all(), *client.keys(f"{ik.prefix}dedup:*"))
        client.zrem(K.timers_index(name), name)
    return problems


def _populate_one(client: redis.Redis, name: str) -> None:
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.floor import scripts, store
    from motion.floor.inbox import Update, encode, enqueue_call

    ik = K.InstanceKeys.of(name)
    args = store.init_args(Idle, "x", {"n": 0}, store.new_incarnation())
    scripts.run(client, "init", [ik.meta, ik.state, K.COMPONENTS, ik.claim], args)
    now = _redis_ms(client)
    entry = encode(Idle, name, Update(FLOW, {"i": 0}))
    keys, args2 = enqueue_call(ik, entry, FLOW, delay_ms=DELAY_MS)
    scripts.run(client, "enqueue", keys, args2)
    pipe = client.pipeline(transaction=False)
    _park(pipe, name, now + DELAY_MS, now)
    pipe.execute()


def _passes(client: redis.Redis, size: int, reps: int, idle_reps: int) -> dict[str, Any]:
    """Median ms of a firer pass with none due, and with :data:`DUE` due; woken counts."""
    from motion.floor import keys as K
    from motion.floor import wakeup
    from motion.worker.firer import fire_once

    sent: list[Any] = []
    idle, woken_idle = [], 0
    cpu = _cpu(client)
    for _ in range(idle_reps):
        start = time.perf_counter()
        woken, _ = fire_once(client, lambda *a: sent.append(a))
        idle.append((time.perf_counter() - start) * 1000)
        woken_idle += woken
    idle_cpu = (_cpu(client) - cpu) / idle_reps
    step = size // DUE
    names = [_name(i) for i in range(0, size, step)][:DUE]
    queues = sorted({wakeup.queue_for(*K.split_instance_name(n)) for n in names})
    busy, woken_due, due_cpu = [], [], 0.0
    for _ in range(reps):
        past = _redis_ms(client) - 1000
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.zadd(K.InstanceKeys.of(name).timers, {FLOW: past})
            pipe.zadd(K.timers_index(name), {name: past})
        pipe.execute()
        cpu, start = _cpu(client), time.perf_counter()
        woken, _ = fire_once(client, lambda *a: sent.append(a))
        busy.append((time.perf_counter() - start) * 1000)
        due_cpu += _cpu(client) - cpu
        # woken and sent: the wake-ups pushed onto the queues (or sent one by one)
        pushed = sum(int(client.llen(q)) for q in queues) if wakeup.inline() else len(sent)
        woken_due.append(min(woken, pushed))
        sent.clear()
        later = _redis_ms(client) + DELAY_MS
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.hdel(K.InstanceKeys.of(name).meta, "wake")
            pipe.zadd(K.InstanceKeys.of(name).timers, {FLOW: later})
            pipe.zadd(K.timers_index(name), {name: later})
        pipe.delete(*queues)
        pipe.execute()
    return {
        "idle_ms": median(idle),
        "due_ms": median(busy),
        "idle_cpu_ms": idle_cpu * 1000,
        "due_cpu_ms": due_cpu * 1000 / reps,
        "woken_idle": woken_idle,
        "woken_due": woken_due,
    }


def _timer_bytes(client: redis.Redis, size: int) -> float:
    """Exact ``MEMORY USAGE`` of a timer's own part: its inbox entry, ``parked`` and
    ``timers`` keys (100 instances' mean), and its share of the due index."""
    from motion.floor import keys as K

    sample = [_name(i) for i in range(0, size, size // 100)][:100]
    own = 0
    for name in sample:
        ik = K.InstanceKeys.of(name)
        for key in (ik.inbox, ik.parked, ik.timers):
            own += int(client.memory_usage(key, samples=0) or 0)
    index = int(client.memory_usage(K.TIMERS, samples=0) or 0)
    return own / len(sample) + index / size


def w12_timers(cfg: Config) -> tuple[Metrics, Checks]:
    """At each size (100k, then 1M; 2k and 20k with ``--quick``): firer pass ms with none
    due and with 1,000 due, Redis bytes per pending timer; the ratios to the first size."""
    from motion.floor import keys as K

    client = redis.Redis.from_url(cfg.url)
    sizes = (2_000, 20_000) if cfg.quick else (100_000, 1_000_000)
    reps = 1 if cfg.quick else 7
    metrics: Metrics = {}
    problems = _reference(client)
    checks: Checks = [
        ("W12T: populated timer = a drain-parked one", not problems, "; ".join(problems))
    ]
    client.config_set("appendonly", "no")  # no AOF rewrite forks during the bulk load
    try:
        base_mem, made = int(client.info("memory")["used_memory"]), 0
        for size in sizes:
            label = f"{size // 1000}k"
            start = time.perf_counter()
            _populate(client, made, size)
            metrics[f"W12T.{label}.populate_s"] = time.perf_counter() - start
            made = size
            used = int(client.info("memory")["used_memory"]) - base_mem
            metrics[f"W12T.{label}.bytes"] = used / size
            metrics[f"W12T.{label}.timer_bytes"] = _timer_bytes(client, size)
            got = _passes(client, size, reps, 50 if cfg.quick else 200)
            metrics[f"W12T.{label}.idle_pass_ms"] = got["idle_ms"]
            metrics[f"W12T.{label}.due_pass_ms"] = got["due_ms"]
            metrics[f"W12T.{label}.idle_redis_cpu_ms"] = got["idle_cpu_ms"]
            metrics[f"W12T.{label}.due_redis_cpu_ms"] = got["due_cpu_ms"]
            count = int(client.zcard(K.TIMERS))
            checks += [
                (f"W12T {label}: every timer in the due index", count == size, f"{count}"),
                (f"W12T {label}: no pass woke one not due", got["woken_idle"] == 0, ""),
                (
                    f"W12T {label}: each due pass woke all {DUE}",
                    all(w == DUE for w in got["woken_due"]),
                    f"{got['woken_due']}",
                ),
            ]
        first, last = (f"{s // 1000}k" for s in (sizes[0], sizes[-1]))
        for what in ("idle_pass_ms", "due_pass_ms"):
            ratio = metrics[f"W12T.{last}.{what}"] / metrics[f"W12T.{first}.{what}"]
            metrics[f"W12T.ratio.{what}"] = ratio
        checks.append(
            (
                f"W12T: passes at {last} <= 2x at {first} (O(due))",
                max(metrics["W12T.ratio.idle_pass_ms"], metrics["W12T.ratio.due_pass_ms"]) <= 2,
                "",
            )
        )
    finally:
        client.config_set("appendonly", "yes")
    for key, value in sorted(metrics.items()):
        print(f"\n    {key} = {value:.4g}", end="")
    print()
    return metrics, checks
