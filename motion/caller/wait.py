"""Waiting for updates: ``flush_update`` and ``run(..., flush_update=True)``.

A :class:`Waiter` belongs to one handle. It waits by polling the instance's
``applied`` counter with a short exponential backoff and a deadline (each pause a
``BLPOP`` on the instance's woke list once it is long enough: the commit that moves
``applied`` on pushes onto it for each registered waiter, so a wait ends a round trip
after its commit, not at the next poll), then reads
the failure records of the updates whose outcome the handle has not seen; its
:class:`motion.caller.enqueue.FailureBook` decides which of them this call raises
(each failure to one call: the one that caused it).

A seq is a ticket of one incarnation: the waiter remembers the incarnation its
updates joined and polls ``applied`` together with the instance's current
incarnation, so an update of an earlier life (cleared, or lost by Redis) is
reported as such (:class:`~motion.errors.InstanceClearedError`), never taken as
applied because a later life counted up to the same seq. A wait with no timeout
gives up with :class:`~motion.errors.NoWorkerError` once no worker able to apply
the component's updates has been seen (:mod:`motion.floor.heartbeat`).

Updates parked by a flow-control option are waited for while their debounce runs;
one held by a pause raises :class:`~motion.errors.FlowPausedError` at once, and a
submitted update whose due time is ahead is not waited for (:mod:`motion.floor.parked`).

Caller road; uses the caller road (enqueue, host), the floor (connection, drive, errors,
heartbeat, inbox, keys, parked, settings).
"""

from __future__ import annotations

import json
import time
from typing import Any

from motion.caller.enqueue import FailureBook
from motion.caller.host import ensure_worker, inprocess_worker_wanted
from motion.floor import drive, heartbeat, parked
from motion.floor import keys as K
from motion.floor.connection import translate_errors
from motion.floor.drive import Steps
from motion.floor.errors import (
    FlushTimeoutError,
    InstanceClearedError,
    NoWorkerError,
    UpdateFailedError,
)
from motion.floor.inbox import ALL_FLOWS, parse_failures
from motion.floor.settings import get_settings

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05
#: from this delay on, a wait blocks on the instance's woke list (a commit ends it)
_BLOCK_FROM = 0.004
#: how long after its timeout Redis may end a BLPOP (seconds): one tick of its cron
_BLOCK_SLACK = 0.1
#: how often a wait with no timeout checks that some worker can apply the updates
_PRESENCE_EVERY = 1.0

Incarnation = bytes | str | None


class _Patience:
    """When a wait with no timeout should ask whether any worker is alive."""

    def __init__(self) -> None:
        self.grace = get_settings().worker_grace_seconds
        self.next = time.monotonic() + self.grace

    def due(self) -> bool:
        """True once the wait has lasted the grace period, then every second."""
        now = time.monotonic()
        if now < self.next:
            return False
        self.next = now + _PRESENCE_EVERY
        return True


class Waiter:
    """Waits for one instance's updates and reports the failures among them."""

    def __init__(
        self, keys: K.InstanceKeys, component: str, *, timeout: float | None = None
    ) -> None:
        self._keys = keys
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._component = component
        self._book = FailureBook()
        self._inc: Incarnation = None  # the incarnation the watched updates joined
        self._orphans: list[int] = []  # seqs of an earlier incarnation, not yet reported

    def watch(self, seq: int, incarnation: Incarnation = None) -> None:
        """Note that the current caller (thread or asyncio task) enqueued update ``seq``
        into ``incarnation``."""
        if incarnation is not None and incarnation != self._inc:
            if self._inc is not None:  # updates of an earlier life, dropped with it
                self._orphans += self._book.drop_open()
            self._inc = incarnation
        self._book.enqueued(seq)

    def steps(
        self,
        flow: str,
        target: int,
        timeout: float | None,
        report: bool = True,
        own: bool = False,
        incarnation: Incarnation = None,
        timers: bool = False,
        field: str | None = None,
    ) -> Steps[None]:
        """Wait until update ``target`` (of ``incarnation``: by default the one this
        handle's updates joined) is applied, then raise the failures this call reports
        (see :mod:`motion.caller.enqueue`): with ``own``, the failure of update ``target``,
        which this call enqueued; else those of a flush of ``flow``. Without
        ``report`` nothing is raised (failures stay for a flush). With ``timers`` a
        submitted update not due yet is waited for too (a ticket's wait). With
        ``field`` (a flush), ``target`` is the meta field's value, in the incarnation
        current then, read by the first look: a wait that is already over is one round
        trip (``lua/watch.lua`` reads the failure records with it).

        Steps for a sync or an async handle to drive (:mod:`motion.floor.drive`).

        Raises:
            InstanceClearedError: the incarnation the updates belong to is gone.
            FlushTimeoutError: ``timeout`` passed; NoWorkerError (one) when none was
                given and no worker for the component was seen for the grace period.
        """
        expected = incarnation or self._inc
        if field is None and target <= 0:  # nothing enqueued in ``incarnation``
            if report:
                self._check_life(incarnation)
            return
        if field is None:
            ensure_worker()
        deadline = None if timeout is None else time.monotonic() + timeout
        patience = _Patience() if timeout is None else None
        delay = _FIRST_DELAY
        registered = False
        keys = [self._keys.meta, self._keys.parked, self._keys.failed]
        # where the failure records are read from once the wait is over: read once (a
        # wait only enqueues none, and a seq another call sees meanwhile is one read again)
        low = self._book.unseen_from() if report else None
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
                # a live lease is a worker at work on the instance: no need to ask
                if (
                    patience is not None
                    and not field
                    and patience.due()
                    and not (yield drive.command("exists", self._keys.lease))
                ):
                    age = yield drive.either(
                        heartbeat.last_seen, heartbeat.alast_seen, self._component
                    )
                    held = yield drive.command("hget", self._keys.meta, "held")
                    self._check_presence(age, target, held)
                # registered as a waiter, the commit that moves 'applied' on wakes the
                # BLPOP below (lua/watch.lua): the wait ends a round trip after it
                args = ["" if field else target, "" if registered else "1"]
                args += ["" if low is None else low, field or ""]
                reply = yield drive.script("watch", keys, args, fast=True)
                applied, current, read, members, records, in_range = reply
                registered = True
                if field:  # the first look of a flush: now the target is known
                    target, field = int(read or 0), None
                    expected = incarnation or current or self._inc
                    if target <= 0:  # nothing enqueued in this incarnation
                        if report:
                            self._check_life(current)
                        return
                    ensure_worker()
                if self._settled(expected, target, applied, current, report) and not (
                    report and (yield from self._held(flow, target, members, timers))
                ):
                    if not report:
                        return
                    start = low if low is not None and low <= target else None
                    if records:  # a parked one's outcome is not final: not a failure yet
                        records = parked.without_parked(records, in_range)
                    return self._finish(flow, target, own, start, records)
                if deadline is not None and time.monotonic() > deadline:
                    held = yield drive.command("hget", self._keys.meta, "held")
                    raise FlushTimeoutError(self._timeout_message(target, timeout, held))
                # a BLPOP timeout under 1 ms would block for good, and one must end well
                # inside the socket timeout (a handle's redis_socket_timeout may be short,
                # and Redis ends a BLPOP up to a cron tick, 100 ms, after its timeout)
                if delay < _BLOCK_FROM or delay + _BLOCK_SLACK > self._socket_timeout() / 2:
                    yield drive.pause(delay)
                elif (yield drive.command("blpop", [self._keys.woke], delay)) is not None:
                    registered = False  # woken: that commit consumed the registration
            delay = min(delay * 2, _MAX_DELAY)

    def _socket_timeout(self) -> float:
        """The socket timeout of this handle's Redis calls (seconds)."""
        return self._timeout or get_settings().redis_socket_timeout

    def _held(
        self, flow: str, target: int, members: list[Any], timers: bool = False
    ) -> Steps[bool]:
        """Whether ``members``, the parked updates up to ``target``, keep the wait going
        (a debounce not fired yet); raises FlowPausedError for one held by a pause (see
        :func:`motion.floor.parked.waits_on`)."""
        keys = self._keys
        if not members:
            return False
        meta = yield drive.command("hgetall", keys.meta)
        timed = yield drive.command("zrange", keys.timers, 0, -1, False, True)
        seconds, micros = yield drive.command("time")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        later = [] if timers else [name for name, at in timed if at > now_ms]  # not due yet
        return parked.waits_on(keys.name, flow, members, meta, later)

    # -- the decisions (no I/O) --------------------------------
    def _settled(
        self, expected: Incarnation, target: int, applied: Any, current: Any, report: bool
    ) -> bool:
        """Whether the wait is over: update ``target`` applied in its incarnation (raises
        :class:`InstanceClearedError` when that incarnation is gone, if ``report``)."""
        if expected is not None and current != expected:
            if not report:
                return True
            raise self._cleared([target], current)
        if int(applied or 0) < target:
            return False
        if report:
            self._check_life(current)
        return True

    def _finish(
        self, flow: str, target: int, own: bool, start: int | None, records: list[Any]
    ) -> None:
        if start is not None:
            self._book.seen(start, target, parse_failures(self._keys.name, records, ALL_FLOWS))
        failures = self._book.claim_own(target) if own else self._book.claim(flow, target)
        if failures:
            raise UpdateFailedError(failures)

    def _check_life(self, current: Incarnation) -> None:
        """Raise for this handle's updates of an earlier incarnation than ``current``."""
        if self._orphans or (self._inc not in (None, current) and self._book.has_open()):
            raise self._cleared([], current)

    def _cleared(self, seqs: list[int], current: Incarnation) -> InstanceClearedError:
        """The error for ``seqs`` and every watched update of an incarnation other than
        ``current`` (which are then forgotten: each is reported once)."""
        lost = {*seqs, *self._orphans}
        self._orphans = []
        if self._inc not in (None, current):
            lost |= set(self._book.drop_open())
            self._inc = None
        listed = ", ".join(f"#{s}" for s in sorted(lost)[:10])
        return InstanceClearedError(
            f"{self._keys.name} was cleared (or lost by Redis) before update(s) {listed} "
            f"enqueued by this handle were applied; they were dropped with that incarnation "
            f"and will not be applied to the new one. Enqueue them again if they still apply."
        )

    def _check_presence(self, age: float | None, target: int, held: Any = None) -> None:
        """Raise :class:`NoWorkerError` unless a worker for the component was seen lately
        and the instance is not held (no worker that was seen could go on with it)."""
        grace = get_settings().worker_grace_seconds
        if held:
            raise NoWorkerError(
                self._held_message(target, held)
                + f" Pass timeout= to wait longer than the grace ({grace:.0f}s)."
            )
        if age is not None and age <= grace:
            return
        seen = (
            "no worker has ever"
            if age is None
            else f"the last one announced itself {age:.0f}s ago; none has since"
        )
        module = f"<module defining {self._component}>"
        how = (
            f"start one: `motion worker -I {module}` or `celery -A workers worker -I "
            f"{module}` with the same Redis settings"
        )
        if not inprocess_worker_wanted():
            how += ", or set MOTION_INPROCESS_WORKER=1 to apply them in this process"
        raise NoWorkerError(
            f"{self._keys.name}: update #{target} is queued, but no worker able to apply "
            f"{self._component}'s updates has been seen for {grace:.0f}s ({seen} been seen "
            f"by this Redis). It stays queued and will be applied once a worker runs: {how}. "
            f"Pass timeout= to wait differently (MOTION_WORKER_GRACE_SECONDS sets the grace)."
        )

    def _held_message(self, target: int, held: Any) -> str:
        """Why update ``target`` waits: a worker took the instance and could not go on."""
        reason = json.loads(held)
        return (
            f"{self._keys.name}: update #{target} is not applied: the instance is held "
            f"({reason.get('held')}: {reason.get('error')}); its updates stay pending. "
            f"Deploy a worker with the code, or repair the state (see `motion status` and "
            f"docs/operations.md)."
        )

    def _timeout_message(self, target: int, timeout: float | None, held: Any = None) -> str:
        if held:
            return f"after {timeout}s: " + self._held_message(target, held)
        return (
            f"{self._keys.name}: update #{target} was not applied within {timeout}s. Is a "
            f"worker running with this component's code? Start one with: celery -A workers "
            f"worker -I <module defining {self._component}> (or see `motion status`)."
        )
