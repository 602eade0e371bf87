"""Which call reports each failed update of a handle (no I/O here).

One handle may be shared by any number of threads and asyncio tasks. Every
update it enqueues belongs to the *caller* that enqueued it: the asyncio task
running at the time, else the thread. The rule (also in ``docs/api.md``):

- ``run(..., flush_update=True)``, ``write_state`` and their async twins raise
  the failure of exactly the update that call enqueued.
- ``flush_update()`` raises the failures, among this handle's updates enqueued
  before the call (of its flow), of the updates its own caller enqueued, and of
  those whose caller can no longer flush them (its thread ended, its task is
  done), that no other call reported yet.
- Each failure is reported to one call at most; one not reported yet stays for
  a later flush. (A flush never takes the failure of a caller still running, so
  it cannot take the one a concurrent ``run(..., flush_update=True)`` waits for.)

:class:`FailureBook` keeps that account for one handle; :mod:`motion.waiting`
feeds it the failure records it reads from Redis. Imports only the floor.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from typing import Any

from motion.floor.errors import FailedUpdate
from motion.floor.inbox import ALL_FLOWS

#: most updates a handle remembers before its first wait (beyond it, the oldest
#: become anybody's: reported to any flush, as if enqueued by a finished caller)
MAX_OPEN = 100_000
#: most failures a handle keeps for a flush that never comes (the oldest go)
MAX_FAILED = 10_000

_Caller = weakref.ReferenceType[Any]


def current_caller() -> Any:
    """The asyncio task running now, else the current thread."""
    loop = asyncio.events._get_running_loop()  # None outside a loop, without raising
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.current_thread()


def _gone(caller: _Caller | None) -> bool:
    """Whether ``caller`` can no longer flush (``None``: nobody's)."""
    if caller is None:
        return True
    obj = caller()
    if obj is None:
        return True
    if isinstance(obj, asyncio.Future):
        return obj.done()
    return not obj.is_alive()


class FailureBook:
    """The updates one handle enqueued whose outcome it has not seen yet, and the
    failures among them not yet reported, each with the caller that enqueued it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, _Caller] = {}  # seq -> its caller; outcome not seen yet
        self._anybody: tuple[int, int] | None = None  # seqs past MAX_OPEN: anybody's
        self._failed: dict[int, tuple[_Caller | None, FailedUpdate]] = {}

    def enqueued(self, seq: int) -> None:
        """Note that the current caller enqueued update ``seq``."""
        caller = weakref.ref(current_caller())
        with self._lock:
            self._open[seq] = caller
            if len(self._open) > MAX_OPEN:
                oldest = sorted(self._open)[: MAX_OPEN // 2]
                for old in oldest:
                    del self._open[old]
                low, high = oldest[0], oldest[-1]
                if self._anybody is not None:
                    low, high = min(low, self._anybody[0]), max(high, self._anybody[1])
                self._anybody = (low, high)

    def drop_open(self) -> list[int]:
        """Forget every update whose outcome is not seen yet (its incarnation is gone:
        it will never be applied); their seqs, for the error that says so."""
        with self._lock:
            seqs = sorted(self._open)
            if self._anybody is not None:
                seqs.append(self._anybody[0])
            self._open.clear()
            self._anybody = None
            return seqs

    def has_open(self) -> bool:
        """Whether some update's outcome is not seen yet."""
        with self._lock:
            return bool(self._open) or self._anybody is not None

    def unseen_from(self, target: int) -> int | None:
        """The lowest seq up to ``target`` whose outcome is not seen yet (read the
        failure records from there), or ``None``: nothing to read."""
        with self._lock:
            low = min((seq for seq in self._open if seq <= target), default=None)
            if self._anybody is not None and self._anybody[0] <= target:
                low = self._anybody[0] if low is None else min(low, self._anybody[0])
            return low

    def seen(self, low: int, target: int, failures: list[FailedUpdate]) -> None:
        """Every update from ``low`` to ``target`` is applied; ``failures`` are the
        failure records of that range (all flows)."""
        by_seq = {failure.seq: failure for failure in failures}
        with self._lock:
            for seq in [s for s in self._open if low <= s <= target]:
                caller = self._open.pop(seq)
                if seq in by_seq:
                    self._failed[seq] = (caller, by_seq[seq])
            if self._anybody is not None and self._anybody[0] >= low:
                first, last = self._anybody
                for seq, failure in by_seq.items():
                    if first <= seq <= min(last, target):
                        self._failed.setdefault(seq, (None, failure))
                self._anybody = (target + 1, last) if last > target else None
            while len(self._failed) > MAX_FAILED:
                del self._failed[min(self._failed)]

    def claim_own(self, seq: int) -> list[FailedUpdate]:
        """The failure of update ``seq`` (if it failed), for the call that enqueued it."""
        with self._lock:
            found = self._failed.pop(seq, None)
        return [] if found is None else [found[1]]

    def claim(self, flow: str, target: int) -> list[FailedUpdate]:
        """The failures a flush of ``flow`` up to ``target`` by the current caller reports."""
        me = current_caller()
        with self._lock:
            mine = [
                seq
                for seq, (caller, failure) in self._failed.items()
                if seq <= target
                and flow in (ALL_FLOWS, failure.flow)
                and ((caller is not None and caller() is me) or _gone(caller))
            ]
            return [self._failed.pop(seq)[1] for seq in sorted(mine)]
