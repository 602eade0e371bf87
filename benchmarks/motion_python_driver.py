"""The workloads on Motion 0.1.132 (``motion-python``), run by its own virtualenv's Python.

``python -P motion_python_driver.py run --workloads W1,W2 [--quick]`` prints one JSON
object ``{"metrics": {...}, "checks": [[what, ok, detail], ...]}`` on its last line.
Motion reads ``MOTION_REDIS_HOST``/``MOTION_REDIS_PORT``; it applies updates in a
thread per instance inside this process. This file imports nothing from this
project (both packages are called ``motion``); the metric keys match
``benchmarks/report.py``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from typing import Any

from motion_python_common import _count, client, counter_ok, percentile, summary, timed, uid
from motion_python_load import w8, w10

from motion import Component

logging.getLogger("motion").setLevel(logging.ERROR)

LLM_SECONDS = 0.1


Serve = Component("MPServe", cache_ttl=0)


@Serve.init_state
def serve_setup(size: int = 100) -> dict[str, Any]:
    return {"blob": b"x" * size, "n": 0, "last": {}, "violations": 0}


@Serve.serve(["read", "read_write"])
def serve_read(state: Any, props: Any) -> int:
    return len(state["blob"])


@Serve.update("read_write")
def serve_write(state: Any, props: Any) -> dict[str, Any]:
    return _count(state, props)


Counter = Component("MPCounter", cache_ttl=0)


@Counter.init_state
def counter_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Counter.update("add")
def counter_add(state: Any, props: Any) -> dict[str, Any]:
    return _count(state, props)


Llm = Component("MPLlm", cache_ttl=0)


@Llm.init_state
def llm_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Llm.update("ask")
def llm_ask(state: Any, props: Any) -> dict[str, Any]:
    time.sleep(LLM_SECONDS)
    return _count(state, props)


class Sizes:
    def __init__(self, quick: bool) -> None:
        self.quick = quick
        self.reps = 1 if quick else 5
        self.n_serve, self.n_serve_big = (200, 30) if quick else (1000, 200)
        self.n_hot = 300 if quick else 2000
        self.n_many = 40 if quick else 200
        self.n_llm = 20 if quick else 50
        self.fresh_seconds = 1.0 if quick else 5.0
        self.n_producer = 200 if quick else 1000
        self.burst_seconds = 2.0 if quick else 10.0
        # W10: sizes tried in turn, each within a bound, until one does not finish
        self.wide_sizes = (10, 20) if quick else (100, 300, 1000)
        self.wide_seconds = 0.2 if quick else 2.0
        self.wide_bound = 20.0 if quick else 60.0


# -- workloads ----------------------------------------------------------------------
def w1(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    metrics, checks = {}, []
    for label, size, n in (("100B", 100, s.n_serve), ("1MB", 1_000_000, s.n_serve_big)):
        with Serve(f"w1-{label}-{uid()}", init_state_params={"size": size}) as h:
            h.run("read", {})
            seen: set[Any] = set()
            reps = [
                timed(lambda i, h=h, seen=seen: seen.add(h.run("read", {"i": i})), n)
                for _ in range(s.reps)
            ]
        metrics.update(summary(f"W1.{label}", reps))
        checks.append((f"W1 {label}: serve saw the state", seen == {size}, str(seen)))
    return metrics, checks


def w2(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    reps, checks = [], []
    for _ in range(s.reps):
        with Serve(f"w2-{uid()}") as h:
            h.run("read", {})
            reps.append(timed(lambda i, h=h: h.run("read_write", {"i": i}), s.n_serve))
            h.flush_update("read_write")
            ok, detail = counter_ok(h, s.n_serve)
        checks.append(("W2 every update applied in order", ok, detail))
    return summary("W2", reps), checks


def w3(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    rates, checks = [], []
    for _ in range(s.reps):
        with Counter(f"w3-{uid()}") as h:
            start = time.perf_counter()
            for i in range(s.n_hot):
                h.run("add", {"i": i})
            h.flush_update("add")
            rates.append(s.n_hot / (time.perf_counter() - start))
            ok, detail = counter_ok(h, s.n_hot)
        checks.append(("W3 every update applied in order", ok, detail))
    return {"W3.ups": statistics.median(rates)}, checks


def w4(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    # a handle per update, shut down after the request, as Motion's Application does;
    # one repeat: Motion needs ~15 ms per handle
    ids = [f"w4-{uid()}-{k}" for k in range(s.n_many)]
    start = time.perf_counter()
    for i in range(10):
        for iid in ids:
            with Counter(iid) as h:
                h.run("add", {"i": i})
    bad = 0
    for iid in ids:
        with Counter(iid) as h:
            h.flush_update("add")
    elapsed = time.perf_counter() - start
    for iid in ids:
        with Counter(iid, disable_update_task=True) as h:
            bad += 0 if counter_ok(h, 10)[0] else 1
    check = ("W4 every instance applied its 10 updates in order", bad == 0, f"{bad} wrong")
    return {"W4.ups": 10 * len(ids) / elapsed}, [check]


def w5(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    walls, checks = [], []
    for _ in range(s.reps):
        handles = [Llm(f"w5-{uid()}-{k}") for k in range(s.n_llm)]
        start = time.perf_counter()
        for i in range(4):
            for h in handles:
                h.run("ask", {"i": i})
        for h in handles:
            h.flush_update("ask")
        walls.append(time.perf_counter() - start)
        bad = sum(0 if counter_ok(h, 4)[0] else 1 for h in handles)
        for h in handles:
            h.shutdown()
        checks.append(
            ("W5 every instance applied its 4 updates in order", bad == 0, f"{bad} wrong")
        )
    return {"W5.wall": statistics.median(walls), "W5.ideal": 4 * LLM_SECONDS}, checks


def w6(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    r = client()
    h = Counter(f"w6-{uid()}")
    key = f"MOTION_VERSION:{h.instance_name}"
    stamps: dict[int, float] = {}
    stop = threading.Event()
    r.config_set("notify-keyspace-events", "K$")
    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(f"__keyspace@0__:{key}")

    def watch() -> None:
        seen = 0
        reader = client()
        while not stop.is_set():
            if pubsub.get_message(timeout=0.05) is None:
                continue
            now = time.perf_counter()
            applied = int(reader.get(key) or 1) - 1
            for seq in range(seen + 1, applied + 1):
                stamps[seq] = now
            seen = max(seen, applied)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    starts = []
    n = int(200 * s.fresh_seconds)
    t0 = time.perf_counter()
    try:
        for i in range(n):
            delay = t0 + i / 200 - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            starts.append(time.perf_counter())
            h.run("add", {"i": i})
        h.flush_update("add")
        deadline = time.monotonic() + 10
        while len(stamps) < n and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        thread.join(5)
        r.config_set("notify-keyspace-events", "")
    lags = [(stamps[i + 1] - t) * 1000 for i, t in enumerate(starts) if i + 1 in stamps]
    ok, detail = counter_ok(h, n)
    h.shutdown()
    checks = [("W6 every update applied in order", ok and len(lags) == n, detail)]
    return {"W6.p50": percentile(lags, 50), "W6.p99": percentile(lags, 99)}, checks


def w7(s: Sizes) -> tuple[dict[str, float], list[Any]]:
    r = client()
    iid = f"w7-{uid()}"
    Counter(iid, disable_update_task=True).shutdown()  # create the instance
    go = f"bench:go:{iid}"
    me = [sys.executable, "-P", os.path.abspath(__file__), "producer"]
    procs = [subprocess.Popen([*me, name, str(s.n_producer), iid, go]) for name in ("A", "B")]
    deadline = time.monotonic() + 60
    while r.exists(f"{go}:ready:A", f"{go}:ready:B") < 2:
        if time.monotonic() > deadline:
            raise RuntimeError("W7 producers did not start")
        time.sleep(0.01)
    start = time.perf_counter()
    r.set(go, 1, ex=600)
    codes = [p.wait(300) for p in procs]
    elapsed = time.perf_counter() - start
    with Counter(iid, disable_update_task=True) as h:
        n, bad, last = h.read_state("n"), h.read_state("violations"), h.read_state("last")
    total = 2 * s.n_producer
    checks = [
        ("W7 producers exited cleanly", codes == [0, 0], str(codes)),
        ("W7 count: every update applied once", n == total, f"{n}/{total}"),
        ("W7 zero per-producer order violations", bad == 0, f"{bad} violations"),
        (
            "W7 each producer's last update applied last",
            last == {"A": s.n_producer - 1, "B": s.n_producer - 1},
            str(last),
        ),
    ]
    return {
        "W7.violations": float(bad),
        "W7.lost": float(total - n),
        "W7.ups": total / elapsed,
    }, checks


def producer(name: str, count: int, iid: str, go: str) -> None:
    r = client()
    with Counter(iid) as h:
        r.set(f"{go}:ready:{name}", 1, ex=600)
        while not r.exists(go):
            time.sleep(0.001)
        for i in range(count):
            h.run("add", {"p": name, "i": i})
        h.flush_update("add")


WORKLOADS = {
    "W1": w1,
    "W2": w2,
    "W3": w3,
    "W4": w4,
    "W5": w5,
    "W6": w6,
    "W7": w7,
    "W8": w8,
    "W10": w10,
}


def main() -> None:
    if sys.argv[1] == "producer":
        producer(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
        sys.stdout.flush()
        os._exit(0)  # the handle is shut down; skip Motion's atexit hook, which fails twice
    quick = "--quick" in sys.argv
    wanted = sys.argv[sys.argv.index("--workloads") + 1].split(",")
    sizes = Sizes(quick)
    metrics: dict[str, float] = {}
    checks: list[Any] = []
    for name in wanted:
        if name not in WORKLOADS:
            continue
        start = time.perf_counter()
        try:
            m, c = WORKLOADS[name](sizes)
        except Exception as exc:  # report and go on with the next workload
            m, c = {}, [(f"{name} ran", False, f"{type(exc).__name__}: {exc}")]
        metrics.update(m)
        checks += c
        print(f"  {name} {time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    print(json.dumps({"metrics": metrics, "checks": checks}))
    sys.stdout.flush()
    os._exit(0)  # Motion's atexit hooks join one thread per handle ever made


if __name__ == "__main__":
    main()
