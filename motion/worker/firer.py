"""The firer: wakes instances whose timers fall due (debounces, submitted due times,
released holds) within tens of milliseconds of their time.

Timers live in Redis (the instance's ``timers`` sorted set, and the due index of
:func:`motion.floor.keys.timers_index`, scored by each instance's earliest timer), so a
debounce in progress survives any worker's death. Every worker's main process (and the
in-process worker) runs one firer thread beside the sweeper timer: it claims the due
names with the ``fire`` script (each name to one firer, rescored a claim period later
in case its wake-up is lost) and pushes each a wake-up (in one pipeline when the broker
is the state Redis), unless one is in flight already (the meta field ``wake``, as the
enqueue script coalesces them), so a backlog is never multiplied; the drain that takes it goes
through the released updates and rescores the index from the instance's own timers.
Between passes the thread sleeps until the earliest timer, but at most
:data:`POLL` seconds, so a timer another process set sooner is seen in time. A pass
costs O(due) (and one ``ZRANGE 0 0`` of the index), whatever the number of timers;
on a cluster too, where the firer reads the due index's directory of non-empty parts
(:mod:`motion.floor.directory`) instead of its 16,384 parts.

Worker road; uses the floor (connection, directory, indexes, keys, scripts, wakeup).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import redis

from motion.floor import directory, indexes, scripts, wakeup
from motion.floor import keys as K
from motion.floor.connection import is_cluster

log = logging.getLogger("motion.firer")

#: the longest the thread sleeps between looks at the due index (seconds)
POLL = 0.05
#: a claimed timer whose wake-up did not lead to a release is claimed again this late
#: (ms): longer than a busy queue takes to deliver it, so a backlog is not doubled
CLAIM_MS = 30_000
#: most names one pass claims
BATCH = 500
#: the flow name wake-ups sent by the firer carry
FIRE_FLOW = "*timer*"

Send = Callable[[str, str, str, int], None]


def fire_once(client: Any, send: Send) -> tuple[int, float]:
    """Claim and wake every instance due now; ``(woken, seconds until the next timer)``.

    When the broker is the state Redis the wake-ups are pushed onto their queues in one
    pipeline (as the enqueue script pushes them), else sent one by one with ``send``.
    On a cluster the due index has a part per slot: the firer reads its directory
    (:mod:`motion.floor.directory`, one round trip: the parts whose earliest timer is
    due, and the earliest of all), runs the ``fire`` script once per primary on the
    due parts only, and lists those parts anew; a pass costs O(due), so every worker's
    firer looks every :data:`POLL` seconds at most (the script claims each name once).
    """
    woken, now, due, lowest = 0, 0, [K.TIMERS], None  # one Redis: the index is one key
    if is_cluster(client):
        now, due, lowest = directory.due(client, K.TIMERS, 0, directory.MOST)
    for node, parts in indexes.group(client, due):
        while True:
            reply = indexes.run_over(node, "fire", parts, [BATCH, CLAIM_MS])
            now = int(reply[0])
            woken += _wake(client, send, [raw.decode() for raw in reply[1:]])
            if len(reply) - 1 < BATCH:
                break
    if is_cluster(client):
        directory.refresh(client, K.TIMERS, due)  # claimed: rescored a claim period on
        if lowest is None:
            return woken, POLL
        # (nothing fired though listed due: the primaries' clocks differ; not a busy loop)
        return woken, min(POLL, max(0.0 if woken else 0.005, (lowest - now) / 1000))
    first = client.zrange(K.TIMERS, 0, 0, withscores=True)
    wait = POLL if not first else max(0.0, min(POLL, (float(first[0][1]) - now) / 1000))
    return woken, wait


def _wake(client: Any, send: Send, claimed: list[str]) -> int:
    """Wake the ``claimed`` instances that have no wake-up in flight; how many."""
    names = _not_in_flight(client, claimed)
    if names and wakeup.inline():
        pipe = client.pipeline(transaction=False)
        for component, instance_id in names:
            queue, message = wakeup.message(component, instance_id, FIRE_FLOW)
            pipe.lpush(queue, wakeup.fill_seq(message, 0))
        pipe.execute()
    else:
        for component, instance_id in names:
            try:
                send(component, instance_id, FIRE_FLOW, 0)
            except Exception:  # the claim lapses: fired again a claim period later
                log.exception("wake-up for %s__%s not sent", component, instance_id)
    return len(names)


def _not_in_flight(client: Any, names: list[str]) -> list[tuple[str, str]]:
    """``(component, id)`` of the claimed ``names`` to wake: not those with a wake-up in
    flight (the meta field ``wake``, which a drain's ``begin`` clears), unless it was
    sent a claim period ago (lost, say); each one to wake is marked (``wake.lua``, one
    pipeline; on a cluster, whose pipelines refuse scripts, one call each). A cleared
    instance leaves the due index."""
    if not names:
        return []
    script = scripts.get("wake")
    if is_cluster(client):
        replies = [
            scripts.run(client, "wake", [K.InstanceKeys.of(n).meta], [CLAIM_MS]) for n in names
        ]
    else:
        pipe = client.pipeline(transaction=False)
        for name in names:
            pipe.evalsha(script.sha, 1, K.InstanceKeys.of(name).meta, CLAIM_MS)
        try:
            replies = pipe.execute()
        except redis.exceptions.NoScriptError:
            client.script_load(script.source)
            return _not_in_flight(client, names)
    for name, reply in zip(names, replies, strict=True):
        if reply == -1:
            client.zrem(K.timers_index(name), name)
    return [K.split_instance_name(n) for n, r in zip(names, replies, strict=True) if r == 1]


class Firer:
    """The firer thread of this process (see the module docstring)."""

    def __init__(self, send: Send, client: Callable[[], Any]) -> None:
        self._send = send
        self._client = client
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="motion-firer", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop the thread."""
        self._stop.set()

    def _loop(self) -> None:
        wait = POLL
        while not self._stop.wait(wait):
            try:
                _, wait = fire_once(self._client(), self._send)
            except Exception:  # keep firing through Redis restarts
                log.exception("firer pass failed")
                wait = 1.0
