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

from motion import keys as K
from motion.connection import get_async_redis, get_redis, translate_errors
from motion.errors import FlushTimeoutError, UpdateFailedError
from motion.failures import FailureBook
from motion.inbox import ALL_FLOWS, parse_failures
from motion.runtime import ensure_worker

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05


class Waiter:
    """Waits for one instance's updates and reports the failures among them."""

    def __init__(self, keys: K.InstanceKeys, component: str) -> None:
        self._keys = keys
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
        client = get_redis(self._keys.name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
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
        client = get_async_redis(self._keys.name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
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

    def _timeout_message(self, target: int, timeout: float | None) -> str:
        return (
            f"{self._keys.name}: update #{target} was not applied within {timeout}s. Is a "
            f"worker running with this component's code? Start one with: celery -A workers "
            f"worker -I <module defining {self._component}> (or see `motion status`)."
        )
