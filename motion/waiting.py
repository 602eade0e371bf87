"""Waiting for updates: ``flush_update`` and ``run(..., flush_update=True)``.

A :class:`Waiter` belongs to one handle. It waits by polling the instance's
``applied`` counter with a short exponential backoff and a deadline, then reads
the failure records of the updates whose outcome the handle has not seen; its
:class:`motion.failures.FailureBook` decides which of them this call raises
(each failure to one call: the one that caused it).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from motion import heartbeat
from motion import keys as K
from motion.connection import get_async_redis, get_redis, translate_errors
from motion.errors import FlushTimeoutError, NoWorkerError, UpdateFailedError
from motion.failures import FailureBook
from motion.inbox import ALL_FLOWS, parse_failures
from motion.runtime import ensure_worker, inprocess_worker_wanted
from motion.settings import get_settings

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05
#: how often a wait with no timeout checks that some worker can apply the updates
_PRESENCE_EVERY = 1.0


class _Patience:
    """When a wait with no timeout should ask whether any worker is alive."""

    def __init__(self) -> None:
        self.grace = get_settings().worker_grace_seconds
        self.start = time.monotonic()
        self.next = self.start + self.grace

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

    def watch(self, seq: int) -> None:
        """Note that the current caller (thread or asyncio task) enqueued update ``seq``."""
        self._book.enqueued(seq)

    def wait(
        self,
        flow: str,
        target: int,
        timeout: float | None,
        report: bool = True,
        own: bool = False,
    ) -> None:
        """Block until update ``target`` is applied, then raise the failures this call
        reports (see :mod:`motion.failures`): with ``own``, the failure of update
        ``target``, which this call enqueued; else those of a flush of ``flow``.
        Without ``report`` nothing is raised (failures stay for a flush); raises
        on timeout."""
        if target <= 0:
            return
        ensure_worker()
        client = get_redis(self._keys.name, self._timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        patience = _Patience() if timeout is None else None
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
                if patience is not None and patience.due():
                    self._check_presence(heartbeat.last_seen(client, self._component), target)
                if int(client.hget(self._keys.meta, "applied") or 0) >= target:
                    if not report:
                        return
                    start = self._book.unseen_from(target)
                    records = (
                        []
                        if start is None
                        else client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, target, own, start, records)
            if deadline is not None and time.monotonic() > deadline:
                raise FlushTimeoutError(self._timeout_message(target, timeout))
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def await_(
        self,
        flow: str,
        target: int,
        timeout: float | None,
        report: bool = True,
        own: bool = False,
    ) -> None:
        """Async :meth:`wait` (never blocks the event loop)."""
        if target <= 0:
            return
        ensure_worker()
        client = get_async_redis(self._keys.name, self._timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        patience = _Patience() if timeout is None else None
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
                if patience is not None and patience.due():
                    age = await heartbeat.alast_seen(client, self._component)
                    self._check_presence(age, target)
                if int(await client.hget(self._keys.meta, "applied") or 0) >= target:
                    if not report:
                        return
                    start = self._book.unseen_from(target)
                    records = (
                        []
                        if start is None
                        else await client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, target, own, start, records)
            if deadline is not None and time.monotonic() > deadline:
                raise FlushTimeoutError(self._timeout_message(target, timeout))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _finish(
        self, flow: str, target: int, own: bool, start: int | None, records: list[Any]
    ) -> None:
        if start is not None:
            self._book.seen(start, target, parse_failures(self._keys.name, records, ALL_FLOWS))
        failures = self._book.claim_own(target) if own else self._book.claim(flow, target)
        if failures:
            raise UpdateFailedError(failures)

    def _check_presence(self, age: float | None, target: int) -> None:
        """Raise :class:`NoWorkerError` unless a worker for the component was seen lately."""
        grace = get_settings().worker_grace_seconds
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

    def _timeout_message(self, target: int, timeout: float | None) -> str:
        return (
            f"{self._keys.name}: update #{target} was not applied within {timeout}s. Is a "
            f"worker running with this component's code? Start one with: celery -A workers "
            f"worker -I <module defining {self._component}> (or see `motion status`)."
        )
