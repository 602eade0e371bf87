"""W8 and W10 on Motion 0.1.132: a burst over capacity, and LLM-scale concurrency.

Part of ``motion_python_driver.py`` (run by the Motion virtualenv's Python; imports
nothing from this project); the metric keys match ``benchmarks/report.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
import threading
import time
from typing import Any

import cloudpickle
from motion_python_common import _count, client, counter_ok, uid

from motion import Component, DiscardPolicy

BURST_OP_SECONDS = 0.02
BURST_KEEP = 5


Burst = Component("MPBurst", cache_ttl=0)


@Burst.init_state
def burst_setup() -> dict[str, Any]:
    return {"calls": 0, "last_i": -1, "violations": 0}


@Burst.update("keep_newest", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=BURST_KEEP)
def burst_keep_newest(state: Any, props: Any) -> dict[str, Any]:
    time.sleep(BURST_OP_SECONDS)
    bad = state["violations"] + (0 if props["i"] > state["last_i"] else 1)
    return {"calls": state["calls"] + 1, "last_i": props["i"], "violations": bad}


Await = Component("MPAwait", cache_ttl=0)


@Await.init_state
def await_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Await.update("ask")
async def await_ask(state: Any, props: Any) -> dict[str, Any]:
    await asyncio.sleep(props["s"])
    return _count(state, props)


def w8(s: Any) -> tuple[dict[str, float], list[Any]]:
    rate = 10 / BURST_OP_SECONDS
    r = client()
    h = Burst(f"w8-{uid()}")
    key = f"MOTION_STATE:{h.instance_name}"
    samples: list[tuple[float, float]] = []
    starts: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        t0 = time.perf_counter()
        while not stop.wait(0.25):
            last = cloudpickle.loads(r.get(key))["last_i"]
            now = time.perf_counter()
            if 0 <= last < len(starts):
                samples.append((now - t0, (now - starts[last]) * 1000))

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    n = int(rate * s.burst_seconds)
    t0 = time.perf_counter()
    for i in range(n):
        delay = t0 + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        starts.append(time.perf_counter())
        h.run("keep_newest", {"i": i})
    stop.set()
    thread.join(5)
    end = time.perf_counter()
    h.flush_update("keep_newest")
    drain = time.perf_counter() - end
    calls, bad, last = h.read_state("calls"), h.read_state("violations"), h.read_state("last_i")
    h.shutdown()
    half = s.burst_seconds / 2
    first = [lag for t, lag in samples if t <= half]
    second = [lag for t, lag in samples if t > half]
    metrics = {
        "W8.keep.rate": n / (end - t0),
        "W8.keep.lag_first_half": max(first, default=float("nan")),
        "W8.keep.lag_second_half": max(second, default=float("nan")),
        "W8.keep.lag_end": samples[-1][1] if samples else float("nan"),
        "W8.keep.drain": drain,
        "W8.keep.calls_per_update": calls / n,
    }
    checks = [
        ("W8 keep: applied in order", bad == 0, f"{bad} violations"),
        ("W8 keep: the last update was applied", last == n - 1, f"last {last}"),
    ]
    return metrics, checks


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/status") as status:
        lines = status.read().splitlines()
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def w10(s: Any) -> tuple[dict[str, float], list[Any]]:
    """One async update per instance, at growing sizes; the largest that finishes."""
    r = client()
    metrics: dict[str, float] = {}
    checks: list[Any] = []
    for n in s.wide_sizes:
        made = time.perf_counter()
        handles = []
        for k in range(n):  # a thread and a connection each
            handles.append(Await(f"w10-{uid()}-{k}"))
            if time.perf_counter() - made > s.wide_bound:
                break
        if len(handles) < n:
            detail = f"{len(handles)} handles made in {s.wide_bound:.0f} s"
            checks.append((f"W10 {n} instances: handles made within the bound", False, detail))
            break  # handles left running: the process exits without joining them
        print(f"  W10: {n} handles in {time.perf_counter() - made:.1f} s", file=sys.stderr)
        keys = [f"MOTION_VERSION:{h.instance_name}" for h in handles]
        start = time.perf_counter()
        for h in handles:
            h.run("ask", {"i": 0, "s": s.wide_seconds})
        enqueue = time.perf_counter() - start
        deadline = start + s.wide_bound
        rss, done = _rss_mb(), 0
        while time.perf_counter() < deadline:
            rss = max(rss, _rss_mb())
            pipe = r.pipeline(transaction=False)
            for key in keys:
                pipe.get(key)
            done = sum(1 for v in pipe.execute() if int(v or 1) >= 2)
            if done == n:
                break
            time.sleep(0.02)
        elapsed = time.perf_counter() - start
        print(f"  W10: {n} instances, {done} done in {elapsed:.1f} s", file=sys.stderr)
        if done < n:
            checks.append(
                (f"W10 {n} instances within {s.wide_bound:.0f} s", False, f"{done}/{n} applied")
            )
            break  # handles left running: the process exits without joining them
        bad = sum(0 if counter_ok(h, 1)[0] else 1 for h in handles[:: max(1, n // 50)])
        checks.append((f"W10 {n} instances: one update each", bad == 0, f"{bad} wrong"))
        metrics = {
            "W10.async.n": float(n),
            "W10.async.wall": elapsed,
            "W10.async.ideal": s.wide_seconds + enqueue,
            "W10.async.ratio": elapsed / (s.wide_seconds + enqueue),
            "W10.async.rss_mb": rss,
        }
        for h in handles:
            h.shutdown()
    return metrics, checks
