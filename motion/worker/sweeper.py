"""Recovery: re-wake instances left pending with no lease holder.

A wake-up can be lost (a queue purged, a broker restart without persistence) and
a worker can die holding a lease. Every pending instance has a place in the
sweep schedule (``motion:sweep``, scored by when to look at it next: one sweep
period after it became pending, then later and later while a wake-up the
sweeper sent sits untaken); a pass reads only the members due, so it costs
O(due), not O(instances); on a cluster it reads only the parts the schedule's
directory lists as due (:mod:`motion.floor.directory`), not all 16,384. It runs
in every worker's main process on a timer (one per cluster at a time, by a Redis
lock) and as the ``motion.sweep`` task for Celery beat. Its schedule is kept by
Redis' clock (the scripts read ``TIME``), so a sweeper whose host clock is off still
sees what is due.

The same timer also nudges held instances waiting for code this process has
(:func:`motion.worker.holds.nudge`; every worker's, not one per cluster: only a worker with
the code can tell).

Worker road; uses the worker road (holds), the floor (connection, directory, indexes,
keys, scripts, settings, wakeup).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import redis

from motion.floor import directory, indexes, scripts, wakeup
from motion.floor import keys as K
from motion.floor.settings import get_settings
from motion.worker import holds

log = logging.getLogger("motion.sweeper")

BATCH = 500
#: most rounds of :data:`BATCH` per part (and of directory looks) one pass makes
ROUNDS = 200
#: the flow name wake-ups sent by the sweeper carry (shown in Flower's args as ``sweeper``)
SWEEP_FLOW = "*sweep*"

Send = Callable[[str, str, str, int], None]


def sweep_once(client: redis.Redis, send: Send, limit: int = 100_000) -> int:
    """One pass: re-send wake-ups for stuck instances; returns how many were sent."""
    grace_ms = int(get_settings().sweep_seconds * 1000)
    sent = 0
    for _ in range(ROUNDS):
        # on a cluster, only the parts whose directory entry is due (O(due), not O(slots))
        now, listed, _ = directory.due(client, K.SWEEP, grace_ms, directory.MOST)
        found = indexes.due(client, K.SWEEP, now - grace_ms, BATCH, parts=listed)
        for part, names in found.items():  # a part's instances all live in its slot
            keys: list[str] = []
            for name in names:
                ik = K.InstanceKeys.of(name)
                # an instance on its ready list with a motion.ready message out is not
                # re-woken: its wake-up is coming (lua/sweep.lua)
                ready = wakeup.ready_list(*K.split_instance_name(name))[1]
                keys += [ik.meta, ik.lease, ready + ":n"]
            script_keys = [*keys, K.part(K.PENDING, names[0]), part]
            woken = scripts.run(client, "sweep", script_keys, [now, grace_ms, *names])
            for raw in woken:
                component, instance_id = K.split_instance_name(raw.decode())
                send(component, instance_id, SWEEP_FLOW, 0)
                sent += 1
        directory.refresh(client, K.SWEEP, listed)  # rescored, or emptied: list them anew
        full = any(len(names) >= BATCH for names in found.values())
        if sent >= limit or not (full or len(listed) >= directory.MOST):
            break
    if sent:
        log.info("sweeper re-sent %d wake-up(s)", sent)
    return sent


def redis_now_ms(client: redis.Redis) -> int:
    """Redis' clock in milliseconds (the one clock of schedules and ages)."""
    seconds, micros = client.time()
    return int(seconds) * 1000 + int(micros) // 1000


def sweep_if_due(client: redis.Redis, send: Send) -> int | None:
    """Sweep unless another process swept within the last period (cluster-wide lock)."""
    directory.rebuild_if_due(client)  # on a cluster, every few minutes: re-list lost parts
    period_ms = int(get_settings().sweep_seconds * 1000)
    if not client.set(K.SWEEPER_LOCK, "1", nx=True, px=max(period_ms * 9 // 10, 1)):
        return None
    directory.rebuild_if_moved(client)  # a failover may have lost the last entries listed
    return sweep_once(client, send)


class SweeperTimer:
    """A daemon thread that calls :func:`sweep_if_due` (and, given ``can_apply``,
    :func:`motion.worker.holds.nudge`) every sweep period."""

    def __init__(self, send: Send, can_apply: holds.CanApply | None = None) -> None:
        self._send = send
        self._can_apply = can_apply
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="motion-sweeper", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()

    def _loop(self) -> None:
        from motion.floor.connection import get_redis

        period = get_settings().sweep_seconds
        while not self._stop.wait(period):
            try:
                sweep_if_due(get_redis(), self._send)
                if self._can_apply is not None:
                    holds.nudge(get_redis(), self._send, self._can_apply)
            except Exception:  # keep the timer alive through Redis restarts
                log.exception("sweeper pass failed")
