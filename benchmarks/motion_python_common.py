"""Helpers of the Motion 0.1.132 workloads (``motion_python_driver.py``, ``motion_python_load.py``).

Run by the Motion virtualenv's Python; imports nothing from this project.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from typing import Any

import redis


def _count(state: Any, props: Any) -> dict[str, Any]:
    producer = props.get("p", "")
    last = dict(state["last"])
    bad = state["violations"] + (0 if props["i"] == last.get(producer, -1) + 1 else 1)
    last[producer] = props["i"]
    return {"n": state["n"] + 1, "last": last, "violations": bad}


def uid() -> str:
    return secrets.token_hex(4)


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def timed(call: Any, n: int) -> list[float]:
    out = []
    for i in range(n):
        start = time.perf_counter()
        call(i)
        out.append((time.perf_counter() - start) * 1000)
    return out


def summary(prefix: str, reps: list[list[float]]) -> dict[str, float]:
    return {
        f"{prefix}.p50": statistics.median(percentile(r, 50) for r in reps),
        f"{prefix}.p99": statistics.median(percentile(r, 99) for r in reps),
    }


def counter_ok(handle: Any, expected: int) -> tuple[bool, str]:
    n, bad = handle.read_state("n"), handle.read_state("violations")
    return n == expected and bad == 0, f"applied {n}/{expected}, order violations {bad}"


def client() -> redis.Redis:
    return redis.Redis(
        host=os.environ["MOTION_REDIS_HOST"], port=int(os.environ["MOTION_REDIS_PORT"])
    )
