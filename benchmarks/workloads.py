"""Workloads W0-W5 against this project's motion and the raw baselines.

Each function takes the run's :class:`Config` and returns ``(metrics, checks)``:
``metrics`` maps a metric key (see :mod:`benchmarks.report`) to a number, and
``checks`` lists ``(what, ok, detail)`` correctness checks. Latency workloads
repeat ``cfg.reps`` times and keep the median of each percentile; throughput
workloads keep the median rate.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import Any

import redis

from benchmarks.harness import BenchError, median, percentile, timed_calls, wait_for

Metrics = dict[str, float]
Checks = list[tuple[str, bool, str]]


@dataclass(frozen=True)
class Config:
    """Sizes of one run (``--quick`` shrinks them)."""

    url: str
    quick: bool
    reps: int
    n_get: int
    n_serve: int
    n_serve_big: int
    n_hot: int
    n_many: int  # instances of W4
    n_llm: int  # instances of W5
    n_tasks: int
    fresh_seconds: float
    n_producer: int  # updates per producer of W7
    burst_seconds: float
    scale_sizes: tuple[int, ...]
    n_wide_llm: int  # instances of W10, one update each
    wide_llm_seconds: float  # how long W10's op waits
    n_cost: int  # instances of W11
    cost_producers: int  # W11's producer processes
    n_cost_tasks: int  # raw Celery no-op tasks of W11's reference

    @classmethod
    def make(cls, url: str, quick: bool) -> Config:
        """The full sizes (the product's workloads), or the quick smoke-run sizes."""
        if quick:
            return cls(
                url,
                quick=True,
                reps=1,
                n_get=300,
                n_serve=200,
                n_serve_big=30,
                n_hot=300,
                n_many=40,
                n_llm=20,
                n_tasks=300,
                fresh_seconds=1.0,
                n_producer=200,
                burst_seconds=2.0,
                scale_sizes=(10_000,),
                n_wide_llm=20,
                wide_llm_seconds=0.2,
                n_cost=200,
                cost_producers=2,
                n_cost_tasks=200,
            )
        return cls(
            url,
            quick=False,
            reps=5,
            n_get=2000,
            n_serve=1000,
            n_serve_big=200,
            n_hot=2000,
            n_many=200,
            n_llm=50,
            n_tasks=2000,
            fresh_seconds=5.0,
            n_producer=1000,
            burst_seconds=10.0,
            scale_sizes=(100_000, 1_000_000),
            n_wide_llm=1000,
            wide_llm_seconds=2.0,
            n_cost=10_000,
            cost_producers=4,
            n_cost_tasks=10_000,
        )


def uid() -> str:
    """A fresh id part, so repeats never share an instance."""
    return secrets.token_hex(4)


def _summary(prefix: str, reps: list[list[float]]) -> Metrics:
    return {
        f"{prefix}.p50": median([percentile(r, 50) for r in reps]),
        f"{prefix}.p99": median([percentile(r, 99) for r in reps]),
    }


# -- W0 / W1: the floor and the serve path, measured interleaved ----------------------
BLOCKS = 10


def interleaved(cfg: Config, calls: dict[str, tuple[Any, int]]) -> Metrics:
    """p50/p99 ms of each named ``(call(i), n)``, run in turns of ``n / BLOCKS`` calls.

    Taking turns within each repeat exposes every call to the same moments of a
    noisy machine, so their ratio holds even when the load changes.
    """
    reps: dict[str, list[list[float]]] = {name: [] for name in calls}
    for _ in range(cfg.reps):
        rep: dict[str, list[float]] = {name: [] for name in calls}
        for _block in range(BLOCKS):
            for name, (call, n) in calls.items():
                rep[name] += timed_calls(call, max(1, n // BLOCKS))
        for name in calls:
            reps[name].append(rep[name])
    metrics: Metrics = {}
    for name, samples in reps.items():
        metrics.update(_summary(name, samples))
    return metrics


def _raw_gets(cfg: Config) -> tuple[dict[str, tuple[Any, int]], Checks]:
    client = redis.Redis.from_url(cfg.url)
    calls: dict[str, tuple[Any, int]] = {}
    checks: Checks = []
    for label, size, n in (("100B", 100, cfg.n_get), ("1MB", 1_000_000, cfg.n_serve_big)):
        key = f"bench:get:{label}"
        client.set(key, b"x" * size)
        got = client.get(key)
        calls[f"W0.get{label}"] = (lambda _i, k=key: client.get(k), n)
        checks.append(
            (f"W0 GET {label} returns the value", got is not None and len(got) == size, "")
        )
    return calls, checks


def w0_get(cfg: Config) -> tuple[Metrics, Checks]:
    """Raw redis-py GET of a 100 B and a 1 MB value: per-call latency (when W1 is not run)."""
    calls, checks = _raw_gets(cfg)
    return interleaved(cfg, calls), checks


def w1_serve(cfg: Config) -> tuple[Metrics, Checks]:
    """``run`` of a serve-only flow (cache off), state 100 B and 1 MB: p50/p99 ms.

    Measured in turns with the raw GETs of W0 (``W0.*``), then again with
    ``MOTION_CLIENT_TRACKING=1`` (``W1t.*``), the opt-in that skips the version
    check round trip while Redis has not invalidated the local copy.
    """
    import motion

    calls, checks = _raw_gets(cfg)
    more_calls, more_checks = _serve_calls(cfg, "W1")
    metrics = interleaved(cfg, {**calls, **more_calls})
    motion.configure(client_tracking=True)
    try:
        tracked_calls, tracked_checks = _serve_calls(cfg, "W1t")
        metrics.update(interleaved(cfg, tracked_calls))
    finally:
        motion.configure(client_tracking=False)
    checks += [_seen(c) for c in more_checks + tracked_checks]
    return metrics, checks


def _serve_calls(cfg: Config, prefix: str) -> tuple[dict[str, tuple[Any, int]], list[Any]]:
    from bench_components import Serve

    calls: dict[str, tuple[Any, int]] = {}
    pending = []
    for label, size, n in (("100B", 100, cfg.n_serve), ("1MB", 1_000_000, cfg.n_serve_big)):
        handle = Serve(f"w1-{label}-{uid()}", init_state_params={"size": size})
        handle.run("read")  # creates the instance and warms the local copy
        results: set[Any] = set()
        calls[f"{prefix}.{label}"] = (
            lambda i, h=handle, out=results: out.add(h.run("read", {"i": i})),
            n,
        )
        pending.append((f"{prefix} {label}: serve saw the state", results, {size}))
    return calls, pending


def _seen(pending: tuple[str, set[Any], set[Any]]) -> tuple[str, bool, str]:
    what, got, want = pending
    return what, got == want, f"{got}"


def _broker_idle(client: redis.Redis, queues: list[str]) -> bool:
    pipe = client.pipeline(transaction=False)
    for q in queues:
        pipe.llen(q)
    pipe.hlen("unacked")
    return not any(pipe.execute())


def celery_batch(cfg: Config) -> float:
    """Send ``n_tasks`` Celery no-op tasks over motion's queues; tasks/s until all acked.

    Acknowledgement comes after the task ran (``task_acks_late``), so empty queues
    and an empty ``unacked`` hash mean every task was delivered and executed.
    """
    from motion.floor.celery_app import get_app, task_queue
    from motion.floor.wakeup import queues_of

    app = get_app()
    queues = queues_of("BenchCounter")  # the queues W4's wake-ups take
    declared = [task_queue(q) for q in queues]
    client = redis.Redis.from_url(cfg.url)
    wait_for(lambda: _broker_idle(client, queues), 30, "an idle broker before the no-op tasks")
    start = time.perf_counter()
    for i in range(cfg.n_tasks):
        app.send_task("bench.noop", queue=declared[i % len(declared)], ignore_result=True)
    wait_for(lambda: _broker_idle(client, queues), 60, "the no-op tasks to be acknowledged")
    return cfg.n_tasks / (time.perf_counter() - start)


def w0_celery(cfg: Config) -> tuple[Metrics, Checks]:
    """Raw Celery no-op tasks on motion's app, queues and worker (when W4 is not run)."""
    rates = [celery_batch(cfg) for _ in range(cfg.reps)]
    check = ("W0 every no-op task delivered and acknowledged", True, f"{cfg.n_tasks} x {cfg.reps}")
    return {"W0.celery.tps": median(rates)}, [check]


def _check_counter(handle: Any, expected: int, what: str) -> tuple[str, bool, str]:
    n, bad = handle.read_state("n"), handle.read_state("violations")
    return (what, n == expected and bad == 0, f"applied {n}/{expected}, order violations {bad}")


def _counter_ok(handle: Any, expected: int) -> bool:
    return bool(handle.read_state("n") == expected and handle.read_state("violations") == 0)


def w2_run_enqueue(cfg: Config) -> tuple[Metrics, Checks]:
    """``run`` of a serve + update flow (enqueue on the path): p50/p99 ms."""
    from bench_components import Serve

    reps, checks = [], []
    for _ in range(cfg.reps):
        handle = Serve(f"w2-{uid()}")
        handle.run("read")
        reps.append(timed_calls(lambda i, h=handle: h.run("read_write", {"i": i}), cfg.n_serve))
        handle.flush_update(timeout=120)
        checks.append(_check_counter(handle, cfg.n_serve, "W2 every update applied in order"))
    return _summary("W2", reps), checks


# -- W3 / W4 / W5: update throughput ------------------------------------------------
def last_commit(cfg: Config, component: str, ids: list[str]) -> float:
    """Wall-clock time (s) of the last commit among ``ids`` (meta ``applied_at``, ms).

    ``flush_update`` polls with a backoff of up to 50 ms, so it returns a little
    after the last commit; this is the commit itself.
    """
    from motion.floor.keys import InstanceKeys, instance_name

    pipe = redis.Redis.from_url(cfg.url).pipeline(transaction=False)
    for iid in ids:
        pipe.hget(InstanceKeys.of(instance_name(component, iid)).meta, "applied_at")
    return max(int(ms or 0) for ms in pipe.execute()) / 1000


def w3_hot(cfg: Config) -> tuple[Metrics, Checks]:
    """One instance: ``n_hot`` updates, then flush: updates/s."""
    from bench_components import Counter

    rates, to_commit, checks, floor = [], [], [], []
    client = redis.Redis.from_url(cfg.url)
    noop = client.script_load("return 0")
    for _ in range(cfg.reps):
        # the limit of a sequential caller: no-op EVALSHA round trips on one connection
        start = time.perf_counter()
        for _i in range(cfg.n_hot):
            client.evalsha(noop, 0)
        floor.append(cfg.n_hot / (time.perf_counter() - start))
        handle = Counter(f"w3-{uid()}")
        handle.read_state("n")  # create outside the timing
        wall, start = time.time(), time.perf_counter()
        for i in range(cfg.n_hot):
            handle.run("add", {"i": i})
        handle.flush_update(timeout=120)
        rates.append(cfg.n_hot / (time.perf_counter() - start))
        done = last_commit(cfg, "BenchCounter", [handle.instance_id])
        to_commit.append(cfg.n_hot / (done - wall))
        checks.append(_check_counter(handle, cfg.n_hot, "W3 every update applied in order"))
    metrics = {"W3.ups": median(rates), "W3.ups_commit": median(to_commit)}
    return {**metrics, "W0.evalsha.rate": median(floor)}, checks


def w4_many(cfg: Config) -> tuple[Metrics, Checks]:
    """``n_many`` instances x 10 updates, a new handle per update: updates/s.

    Each repeat is preceded by a batch of raw Celery no-op tasks (``W0.celery.tps``).
    """
    from bench_components import Counter

    rates, to_commit, tasks, checks = [], [], [], []
    per = 10
    for _ in range(cfg.reps):
        tasks.append(celery_batch(cfg))  # the raw Celery reference, in turns with W4
        ids = [f"w4-{uid()}-{k}" for k in range(cfg.n_many)]
        wall, start = time.time(), time.perf_counter()
        for i in range(per):
            for iid in ids:
                Counter(iid).run("add", {"i": i})
        for iid in ids:
            Counter(iid).flush_update(timeout=120)
        rates.append(per * len(ids) / (time.perf_counter() - start))
        to_commit.append(per * len(ids) / (last_commit(cfg, "BenchCounter", ids) - wall))
        bad = [iid for iid in ids if not _counter_ok(Counter(iid), per)]
        checks.append(
            ("W4 every instance applied its 10 updates in order", not bad, f"{len(bad)} wrong")
        )
    metrics = {"W4.ups": median(rates), "W4.ups_commit": median(to_commit)}
    return {**metrics, "W0.celery.tps": median(tasks)}, checks


def w5_llm(cfg: Config) -> tuple[Metrics, Checks]:
    """``n_llm`` instances x 4 updates of a 100 ms op: wall seconds (ideal 0.4 s)."""
    from bench_components import LLM_SECONDS, Llm

    walls, to_commit, checks = [], [], []
    per = 4
    for _ in range(cfg.reps):
        ids = [f"w5-{uid()}-{k}" for k in range(cfg.n_llm)]
        handles = [Llm(iid) for iid in ids]
        for h in handles:
            h.read_state("n")  # create outside the timing
        wall, start = time.time(), time.perf_counter()
        for i in range(per):
            for h in handles:
                h.run("ask", {"i": i})
        for h in handles:
            h.flush_update(timeout=120)
        walls.append(time.perf_counter() - start)
        to_commit.append(last_commit(cfg, "BenchLlm", ids) - wall)
        bad = [h for h in handles if not _counter_ok(h, per)]
        checks.append(
            ("W5 every instance applied its 4 updates in order", not bad, f"{len(bad)} wrong")
        )
    metrics = {"W5.wall": median(walls), "W5.wall_commit": median(to_commit)}
    return {**metrics, "W5.ideal": per * LLM_SECONDS}, checks


def require(condition: bool, message: str) -> None:
    """Raise :class:`BenchError` with ``message`` unless ``condition``."""
    if not condition:
        raise BenchError(message)
