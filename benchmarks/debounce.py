"""W12 against this project's motion: a debounced batch op, and many pending debounces.

Part one sends 1,000 events evenly over 10 s to one instance whose flow is debounced
(``debounce=0.5, max_wait=5, batch=True``, an op taking 50 ms): how many op calls,
whether any event was lost, and the lag from the last event to the commit that
applied it (the instance's ``applied_at``, Redis' clock). Part two gives 10,000
instances one update each of a flow debounced 10 minutes (pipelined enqueues): Redis
memory per pending debounce, the cost of a firer pass while none is due (what every
worker pays every 50 ms), and, with every timer then moved to fall due at the same
moment, how late each was applied after it (the firing cost of 10,000 at once).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from benchmarks.harness import percentile, wait_for
from benchmarks.stream import paced
from benchmarks.workloads import Checks, Config, Metrics, uid


def w12_debounce(cfg: Config) -> tuple[Metrics, Checks]:
    """Both parts (see the module docstring)."""
    metrics, checks = _one_instance(cfg)
    more, more_checks = _many_pending(cfg)
    return {**metrics, **more}, checks + more_checks


def _one_instance(cfg: Config) -> tuple[Metrics, Checks]:
    from bench_components import Debounced

    client = redis.Redis.from_url(cfg.url)
    seconds = 2.0 if cfg.quick else 10.0
    n = 200 if cfg.quick else 1000
    handle = Debounced(f"w12-{uid()}")
    paced(n / seconds, seconds, lambda i: handle.run("event", {"i": i}))
    last_sent_ms = _redis_ms(client)
    handle.flush_update(timeout=60)
    meta = client.hgetall(f"motion:{{{handle.instance_name}}}:meta")
    lag = (int(meta[b"applied_at"]) - last_sent_ms) / 1000
    calls, events = handle.read_state("calls"), handle.read_state("events")
    bad = handle.read_state("violations")
    metrics = {"W12.calls": float(calls), "W12.lost": float(n - events), "W12.lag": lag}
    checks = [
        ("W12: op calls <= 4", calls <= (4 if not cfg.quick else 2), f"{calls} calls"),
        ("W12: no event lost", events == n, f"{events}/{n}"),
        ("W12: batches in order", bad == 0, f"{bad} violations"),
        ("W12: lag <= debounce + 0.5 s", lag <= 1.0, f"{lag:.3f} s"),
    ]
    return metrics, checks


def _redis_ms(client: redis.Redis) -> int:
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def _many_pending(cfg: Config) -> tuple[Metrics, Checks]:
    from bench_components import Debounced

    from motion.caller.enqueue import wakeup_to_push
    from motion.floor import keys as K
    from motion.floor import scripts
    from motion.floor.inbox import Update, encode, enqueue_call, new_token

    client = redis.Redis.from_url(cfg.url)
    n = 1000 if cfg.quick else 10_000
    tag = uid()
    handles = [Debounced(f"w12m-{tag}-{i}") for i in range(n)]  # created first: not counted
    names = [h.instance_name for h in handles]
    index = K.timers_index("")
    before = int(client.info("memory")["used_memory"])
    started = time.perf_counter()
    sha = client.script_load(scripts.get("enqueue").source)
    for lo in range(0, n, 1000):  # pipelined, as many producers would send them
        pipe = client.pipeline(transaction=False)
        for handle in handles[lo : lo + 1000]:
            name = handle.instance_name
            entry = encode(Debounced, name, Update("idle", {"i": 0}))
            push = wakeup_to_push(Debounced.name, handle.instance_id, "idle")
            keys, args = enqueue_call(
                K.InstanceKeys.of(name), entry, "idle", push, token=new_token()
            )
            pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute()
    wanted = set(names)
    wait_for(lambda: wanted <= _indexed(client, index), 600, "every debounce pending")
    parked_s = time.perf_counter() - started
    after = int(client.info("memory")["used_memory"])
    # a firer pass with nothing due: what each worker's firer costs between timers
    passes = 200
    t0 = time.perf_counter()
    for _ in range(passes):
        scripts.run(client, "fire", [index], [500, 2000])
        client.zrange(index, 0, 0, withscores=True)
    idle_pass_ms = (time.perf_counter() - t0) / passes * 1000
    # every timer moved to fall due together, 2 s from now: the firing cost of all at once
    due = _redis_ms(client) + 2000
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.zadd(K.InstanceKeys.of(name).timers, {"idle": due})
        pipe.zadd(index, {name: due})
    pipe.execute()
    wait_for(lambda: not (wanted & _indexed(client, index)), 600, "every debounce to fire")
    for handle in handles[:: max(1, n // 100)]:  # a sample is enough to know they apply
        handle.flush_update(timeout=120)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hget(f"motion:{{{name}}}:meta", "applied_at")
    late = [(int(at) - due) / 1000 for at in pipe.execute() if at and int(at) >= due]
    metrics = {
        "W12.pending.bytes": (after - before) / n,
        "W12.pending.idle_pass_ms": idle_pass_ms,
        "W12.pending.late_p50": percentile(late, 50),
        "W12.pending.late_p99": percentile(late, 99),
        "W12.pending.n": float(n),
        "W12.pending.enqueue_s": parked_s,
    }
    checks = [("W12: every pending debounce applied", len(late) == n, f"{len(late)}/{n}")]
    return metrics, checks


def _indexed(client: Any, index: str) -> set[str]:
    return {k.decode() for k in client.zrange(index, 0, -1)}
