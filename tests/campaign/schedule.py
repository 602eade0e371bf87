"""The nemesis's fault kinds and the seeded schedule of one campaign run.

A schedule is a list of :class:`Fault` (when, which kind, its parameters), drawn
from ``random.Random(seed)`` alone, so ``--campaign-seed N`` with the same kinds
and length gives the same schedule again; it is printed before the run. (The
processes' interleavings are real, not simulated: a seed reproduces the faults
and the workload, not every timing.)

Kinds are switchable: :data:`HOLDING` are those the engine withstands today and
that the default suite runs; :data:`AWAITING` maps each other kind to the fix it
waits for. ``MOTION_CAMPAIGN_KINDS`` (a comma list, or ``all``) overrides the set.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from typing import Any

#: the campaign workers' lease (``MOTION_LEASE_SECONDS``)
LEASE_SECONDS = 2.0

#: every fault kind, and what it does
KINDS = {
    "worker_kill": "SIGKILL a whole worker (restarted by the supervisor) or a pool child",
    "worker_pause": "SIGSTOP a worker past its lease, then SIGCONT (its late commit is refused)",
    "redis_restart": "graceful redis-server restart on the same AOF",
    "redis_hang": "SIGSTOP redis-server for 1-3 s, then SIGCONT",
    "redis_crash": "kill -9 redis-server (appendfsync always), restart on the same AOF",
    "dup_wakeup": "send extra motion.apply wake-ups for instances with updates",
    "lost_wakeup": "purge every wake-up queue (the sweeper must re-wake)",
    "failing_op": "enqueue an update whose op raises (it must be recorded failed)",
    "recreate": "clear_instance an instance under load; the next run() re-creates it",
    "deploy": "rolling deploy: callers start a new flow before any worker has its code",
    "raising_hook": "an update whose save_state hook raises (recorded failed, not a stall)",
    "memory": "CONFIG SET maxmemory just above used_memory (noeviction) for 2-4 s",
    "pause_restart": "SIGSTOP every worker, restart redis-server meanwhile, then SIGCONT",
    "debounce": "a burst of updates on a debounced batch flow (applied together, later)",
    "pause": "pause a flow of an instance, enqueue on it, resume it 1-3 s later",
    "timers": "enqueue updates due 0.2-2 s later (held, then fired by a worker's firer)",
}

#: kinds that hold on today's engine (the default suite runs these)
HOLDING = (
    "worker_kill",
    "worker_pause",
    "redis_restart",
    "redis_hang",
    "redis_crash",
    "dup_wakeup",
    "lost_wakeup",
    "failing_op",
    "recreate",
    "deploy",
    "raising_hook",
    "memory",
    "debounce",
    "pause",
    "timers",
)

#: kinds that find violations today, with the fix each waits for
AWAITING = {
    "pause_restart": "a worker paused across a Redis restart consumes again "
    "(tests/campaign/test_findings.py; no owner yet)",
}


def enabled_kinds(default: tuple[str, ...] = HOLDING) -> tuple[str, ...]:
    """The kinds to inject: ``MOTION_CAMPAIGN_KINDS`` (comma list or ``all``), else ``default``."""
    raw = os.environ.get("MOTION_CAMPAIGN_KINDS", "").strip()
    if not raw:
        return default
    if raw == "all":
        return tuple(KINDS)
    kinds = tuple(k.strip() for k in raw.split(",") if k.strip())
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"MOTION_CAMPAIGN_KINDS: unknown kinds {unknown}; use {sorted(KINDS)}")
    return kinds


@dataclass(frozen=True)
class Fault:
    """One fault: ``at`` seconds after the load started, its kind and parameters."""

    at: float
    kind: str
    params: dict[str, Any] = field(default_factory=dict)

    def line(self) -> str:
        """``t=  1.23s kind k=v ...`` for the printed schedule."""
        args = " ".join(f"{k}={v}" for k, v in self.params.items())
        return f"t={self.at:6.2f}s {self.kind} {args}".rstrip()


def plan(seed: int, kinds: tuple[str, ...], seconds: float, gap: float) -> list[Fault]:
    """The faults of a run: one every ``gap`` s on average, kinds drawn from ``kinds``.

    Each enabled kind appears at least once when there is room; a rolling deploy
    happens at most once (there is one new version). Unless ``pause_restart`` is
    enabled, the nemesis holds a Redis restart or crash back until no worker is
    paused and 3 s have passed since a worker resumed or Redis came back from a hang
    (a restart then can leave a Celery consumer stuck: that kind's fault).
    """
    rng = random.Random(seed)
    faults: list[Fault] = []
    at = rng.uniform(0.5, 1.0) * gap
    pool = list(kinds)
    rng.shuffle(pool)  # the first faults cover each kind once, in a seeded order
    while at < seconds and kinds:
        kind = pool.pop() if pool else rng.choice(kinds)
        if kind == "deploy" and any(f.kind == "deploy" for f in faults):
            if kinds == ("deploy",):
                break  # nothing else to draw
            continue
        faults.append(Fault(round(at, 2), kind, _params(rng, kind)))
        at += rng.uniform(0.5, 1.5) * gap
    return faults


def _params(rng: random.Random, kind: str) -> dict[str, Any]:
    """Parameters drawn for one fault (indices are taken modulo what exists then)."""
    if kind == "worker_kill":
        return {"worker": rng.randrange(100), "child": rng.random() < 0.5}
    if kind in ("worker_pause", "pause_restart"):
        return {"worker": rng.randrange(100), "beyond_lease": round(rng.uniform(0.5, 2.0), 2)}
    if kind == "redis_hang":
        return {"seconds": round(rng.uniform(1.0, 3.0), 2)}
    if kind in ("dup_wakeup", "failing_op", "recreate", "raising_hook"):
        return {"instance": rng.randrange(1000), "count": rng.randint(1, 3)}
    if kind == "deploy":
        return {"old_for": round(rng.uniform(1.5, 3.0), 2)}
    if kind == "debounce":
        return {"instance": rng.randrange(1000), "count": rng.randint(2, 6)}
    if kind == "pause":
        return {
            "instance": rng.randrange(1000),
            "count": rng.randint(1, 4),
            "seconds": round(rng.uniform(1.0, 3.0), 2),
        }
    if kind == "timers":
        return {
            "instance": rng.randrange(1000),
            "count": rng.randint(1, 3),
            "delay_ms": rng.randint(200, 2000),
        }
    if kind == "memory":
        return {"seconds": round(rng.uniform(2.0, 4.0), 2), "headroom_kb": rng.choice([0, 64])}
    return {}
