"""Waiting for updates: ``flush_update`` and ``run(..., flush_update=True)``.

A :class:`Waiter` belongs to one handle. It remembers the first seq the handle
enqueued per flow since its last flush, so a flush raises the failures of the
updates it is answerable for, each once, and waits by polling the instance's
``applied`` counter with a short exponential backoff and a deadline.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from motion import keys as K
from motion.connection import get_async_redis, get_redis, translate_errors
from motion.errors import FlushTimeoutError, UpdateFailedError
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

    def watch(self, flow: str, seq: int) -> None:
        """Note that the handle enqueued update ``seq`` of ``flow``."""
        self._first.setdefault(flow, seq)

    def wait(self, flow: str, target: int, timeout: float | None, report: bool = True) -> None:
        """Block until update ``target`` is applied; raise failures (unless not
        ``report``: they are kept for the next flush), or on timeout."""
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
                    start = self._start(flow)
                    records = (
                        []
                        if start is None
                        else client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, records)
            if deadline is not None and time.monotonic() > deadline:
                held = client.hget(self._keys.meta, "held")
                raise FlushTimeoutError(self._timeout_message(target, timeout, held))
            time.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

    async def await_(
        self, flow: str, target: int, timeout: float | None, report: bool = True
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
                    start = self._start(flow)
                    records = (
                        []
                        if start is None
                        else await client.zrangebyscore(self._keys.failed, start, target)
                    )
                    return self._finish(flow, records)
            if deadline is not None and time.monotonic() > deadline:
                held = await client.hget(self._keys.meta, "held")
                raise FlushTimeoutError(self._timeout_message(target, timeout, held))
            await asyncio.sleep(delay)
            delay = min(delay * 2, _MAX_DELAY)

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

    def _timeout_message(self, target: int, timeout: float | None, held: Any = None) -> str:
        if held:  # a worker took the instance and could not go on: say why
            reason = json.loads(held)
            return (
                f"{self._keys.name}: update #{target} was not applied within {timeout}s: "
                f"the instance is held ({reason.get('held')}: {reason.get('error')}); its "
                f"updates stay pending. Deploy a worker with the code, or repair the state "
                f"(see `motion status` and docs/operations.md)."
            )
        return (
            f"{self._keys.name}: update #{target} was not applied within {timeout}s. Is a "
            f"worker running with this component's code? Start one with: celery -A workers "
            f"worker -I <module defining {self._component}> (or see `motion status`)."
        )
