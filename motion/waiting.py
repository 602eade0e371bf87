"""Waiting for updates: ``flush_update`` and ``run(..., flush_update=True)``.

A :class:`Waiter` belongs to one handle. It remembers the first seq the handle
enqueued per flow since its last flush, so a flush raises the failures of the
updates it is answerable for, each once, and waits by polling the instance's
``applied`` counter with a short exponential backoff and a deadline.

A seq is a ticket of one incarnation: the waiter remembers the incarnation its
updates joined and polls ``applied`` together with the instance's current
incarnation, so an update of an earlier life (cleared, or lost by Redis) is
reported as such (:class:`~motion.errors.InstanceClearedError`), never taken as
applied because a later life counted up to the same seq.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from motion import keys as K
from motion.connection import get_async_redis, get_redis, translate_errors
from motion.errors import FlushTimeoutError, InstanceClearedError, UpdateFailedError
from motion.inbox import ALL_FLOWS, parse_failures
from motion.runtime import ensure_worker

_FIRST_DELAY = 0.0005
_MAX_DELAY = 0.05


class Waiter:
    """Waits for one instance's updates and reports the failures among them."""

    def __init__(self, keys: K.InstanceKeys, component: str) -> None:
        self._keys = keys
        self._component = component
        self._first: dict[str, int] = {}  # flow -> first seq enqueued since the last flush
        self._inc: bytes | str | None = None  # the incarnation those updates joined
        self._orphans: list[int] = []  # seqs of an earlier incarnation, not yet reported

    def watch(self, flow: str, seq: int, incarnation: bytes | str | None = None) -> None:
        """Note that the handle enqueued update ``seq`` of ``flow`` into ``incarnation``."""
        if incarnation is not None and incarnation != self._inc:
            if self._inc is not None:  # updates of an earlier life, dropped with it
                self._orphans += sorted(self._first.values())
                self._first.clear()
            self._inc = incarnation
        self._first.setdefault(flow, seq)

    def wait(
        self,
        flow: str,
        target: int,
        timeout: float | None,
        report: bool = True,
        incarnation: bytes | str | None = None,
    ) -> None:
        """Block until update ``target`` (of ``incarnation``: by default the one this
        handle's updates joined) is applied; raise failures (unless not ``report``:
        they are kept for the next flush), or on timeout.

        Raises :class:`~motion.errors.InstanceClearedError` if the incarnation the
        updates belong to is gone (cleared or lost) before they were applied."""
        expected = incarnation or self._inc
        if target <= 0:  # nothing enqueued in ``incarnation`` (None: no instance now)
            if report:
                self._check_life(incarnation)
            return
        ensure_worker()
        client = get_redis(self._keys.name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
                applied, current = client.hmget(self._keys.meta, "applied", "inc")
                if expected is not None and current != expected:
                    if not report:
                        return
                    raise self._cleared([target], current)
                if int(applied or 0) >= target:
                    if not report:
                        return
                    self._check_life(current)
                    start = self._start(flow)
                    records = (
                        []
                        if start is None
                        else client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, records)
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
        incarnation: bytes | str | None = None,
    ) -> None:
        """Async :meth:`wait` (never blocks the event loop)."""
        expected = incarnation or self._inc
        if target <= 0:  # nothing enqueued in ``incarnation`` (None: no instance now)
            if report:
                self._check_life(incarnation)
            return
        ensure_worker()
        client = get_async_redis(self._keys.name)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_DELAY
        while True:
            with translate_errors(f"waiting for updates of {self._keys.name}", self._keys.name):
                applied, current = await client.hmget(self._keys.meta, "applied", "inc")
                if expected is not None and current != expected:
                    if not report:
                        return
                    raise self._cleared([target], current)
                if int(applied or 0) >= target:
                    if not report:
                        return
                    self._check_life(current)
                    start = self._start(flow)
                    records = (
                        []
                        if start is None
                        else await client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, records)
            if deadline is not None and time.monotonic() > deadline:
                raise FlushTimeoutError(self._timeout_message(target, timeout))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    def _check_life(self, current: bytes | str | None) -> None:
        """Raise for this handle's updates of an earlier incarnation than ``current``."""
        if self._orphans or (self._inc not in (None, current) and self._first):
            raise self._cleared([], current)

    def _cleared(self, seqs: list[int], current: bytes | str | None) -> InstanceClearedError:
        """The error for ``seqs`` and every watched update of an incarnation other than
        ``current`` (which are then forgotten: each is reported once)."""
        lost = {*seqs, *self._orphans}
        self._orphans = []
        if self._inc not in (None, current):
            lost |= set(self._first.values())
            self._first.clear()
            self._inc = None
        listed = ", ".join(f"#{s}" for s in sorted(lost)[:10])
        return InstanceClearedError(
            f"{self._keys.name} was cleared (or lost by Redis) before update(s) {listed} "
            f"enqueued by this handle were applied; they were dropped with that incarnation "
            f"and will not be applied to the new one. Enqueue them again if they still apply."
        )

    def _start(self, flow: str) -> int | None:
        if flow == ALL_FLOWS:
            return min(self._first.values(), default=None)
        return self._first.get(flow)

    def _finish(self, flow: str, records: list[Any]) -> None:
        if flow == ALL_FLOWS:
            self._first.clear()
        else:
            self._first.pop(flow, None)
        failures = parse_failures(self._keys.name, records, flow)
        if failures:
            raise UpdateFailedError(failures)

    def _timeout_message(self, target: int, timeout: float | None) -> str:
        return (
            f"{self._keys.name}: update #{target} was not applied within {timeout}s. Is a "
            f"worker running with this component's code? Start one with: celery -A workers "
            f"worker -I <module defining {self._component}> (or see `motion status`)."
        )
