"""Leases: one drainer per instance at a time, with a fencing token.

A worker takes an instance's lease before draining its inbox (the ``begin``
script, which also returns the first updates to apply; see :mod:`motion.worker.engine`).
The lease carries a token, ``<incarnation>:<fence>:<nonce>``: the fence only grows
within a life of the instance, the incarnation id is new for each life and the
nonce is random, so no token is ever handed out twice, even after the instance was
cleared and created again or Redis lost the counter. Every commit checks the token
holds the lease and belongs to the instance's current incarnation, so a worker that
lost its lease (paused, partitioned, too slow, or draining a cleared life) cannot
commit. One daemon thread per process
renews every held lease while slow ops (an LLM call) run.

A renewal can reach Redis just after the holder's own last commit (or
:func:`release`) freed the lease, while the holder has not yet dropped it from the
renewer: on a loaded machine the drain thread may wait for the CPU in between.
The holder sets :attr:`Lease.ending` before any call that may free the lease (and
clears it when the lease was kept), so such a refused renewal is not taken for a
lost lease.

An op that holds the GIL (a long regex, a big-integer op in C) keeps that thread
from running, and the lease key expires. Expiry only lets another worker take
over (a new token); while nobody has, the holder's token is still the instance's
fence, and its renewal and commit are accepted (see ``holds`` in ``lua/lib.lua``):
the token is what keeps a commit safe.

Worker road; uses the floor (connection, keys, scripts, store).
"""

from __future__ import annotations

import logging
import os
import threading

import redis

from motion.floor import keys as K
from motion.floor import scripts
from motion.floor.store import now_ms

log = logging.getLogger("motion.lease")


class Lease:
    """A held lease: the instance, its token, and whether it was lost."""

    def __init__(self, keys: K.InstanceKeys, token: bytes, period_ms: int) -> None:
        self.keys = keys
        self.token = token
        self.period_ms = period_ms
        self.lost = threading.Event()
        #: set while a call that may free the lease is in flight, and after it freed it
        self.ending = threading.Event()

    @property
    def incarnation(self) -> bytes:
        """The incarnation of the instance this lease was taken in."""
        return self.token.split(b":", 1)[0]


def release(client: redis.Redis, lease: Lease, abandon: bool = False, hold: str = "") -> int:
    """Free the lease if the inbox is empty (or anyway, to ``abandon`` a failed drain,
    marking the instance held for the reason ``hold`` if given): 1 released, 0 more
    to do, 2 a timer of the instance is due (go through it), -1 lost."""
    keys = lease.keys
    args = [lease.token, keys.name, 1 if abandon else 0, hold]
    indexes = [K.part(index, keys.name) for index in (K.PENDING, K.SWEEP, K.HELD)]
    script_keys = [keys.meta, keys.lease, *indexes, keys.timers]
    lease.ending.set()
    result = int(scripts.run(client, "release", script_keys, args))
    if result in (0, 2):  # updates arrived meanwhile, or a timer is due: still ours
        lease.ending.clear()
    return result


class Renewer:
    """The process's lease renewal thread; started on first use, one per process."""

    def __init__(self) -> None:
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def hold(self, lease: Lease) -> None:
        """Keep ``lease`` renewed until :meth:`drop`."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: start our own thread
                self._pid = os.getpid()
                self._held = {}
                threading.Thread(target=self._loop, name="motion-lease", daemon=True).start()
            self._held[id(lease)] = lease

    def drop(self, lease: Lease) -> None:
        """Stop renewing ``lease``."""
        with self._lock:
            self._held.pop(id(lease), None)

    def _loop(self) -> None:
        from motion.floor.connection import get_redis

        while True:
            with self._lock:
                periods = [lease.period_ms for lease in self._held.values()]
            self._wake.wait(min(periods, default=3000) / 3000)
            with self._lock:  # after the wait: leases taken meanwhile are renewed now
                leases = list(self._held.values())
            started = now_ms()
            for lease in leases:
                try:
                    ok = scripts.run(
                        get_redis(),
                        "renew",
                        [lease.keys.lease, lease.keys.meta],
                        [lease.token, lease.period_ms],
                    )
                except Exception as exc:  # this thread must outlive any error
                    # Redis away: the commit check still protects state; keep trying.
                    log.warning("renewing the lease of %s failed: %s", lease.keys.name, exc)
                    continue
                with self._lock:
                    released = id(lease) not in self._held  # the drain ended meanwhile
                if not ok and not released and not lease.ending.is_set():
                    log.warning("lost the lease of %s (token %r)", lease.keys.name, lease.token)
                    lease.lost.set()
            elapsed = now_ms() - started
            if elapsed > 1000:
                log.warning("renewing %d leases took %d ms", len(leases), elapsed)


RENEWER = Renewer()
