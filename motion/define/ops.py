"""Running an op to completion: plain functions, generators, coroutines, async generators.

A serve op may be any of the four; ``run`` wants its whole result, ``gen`` and
``agen`` its items one by one. Calls are timed: the time each serve op usually takes
decides how ``run`` reads the state (see :meth:`ServeTimes.quick`).

Definition layer: what an op is (:class:`motion.define.component.Op`) and how it is
called; no Redis. Uses the standard library only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Coroutine, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from motion.define.component import Op
    from motion.floor.props import Properties, State


class ServeTimes:
    """How long each serve op usually takes (a moving average), to pick the serve path."""

    #: ops quicker than this may run again on a changed state at less cost than the
    #: round trip that serving ahead saves
    QUICK_SECONDS = 0.001

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}

    def record(self, op: Op, seconds: float) -> None:
        """Fold one run of ``op`` into its average."""
        key = id(op)
        previous = self._seconds.get(key)
        self._seconds[key] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def quick(self, op: Op) -> bool:
        """Whether ``op`` is known to be quick (an op not run yet is not)."""
        return self._seconds.get(id(op), 1.0) < self.QUICK_SECONDS


#: the process's serve-op timings
SERVE_TIMES = ServeTimes()


def call(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion in this thread (on a copy of ``state``), timing it."""
    started = time.perf_counter()
    out = _call_and_list(op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


async def acall(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion without blocking the event loop, timing it."""
    started = time.perf_counter()
    if op.is_async:
        out = await collect(op.call(state.copy(), props))
    else:  # a sync op must not block the event loop
        out = await asyncio.to_thread(_call_and_list, op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


def iterable(value: Any) -> bool:
    """Whether a serve op's output is a sequence of items to stream."""
    return inspect.isgenerator(value) or isinstance(value, list | tuple)


async def collect(value: Any) -> Any:
    """Await a coroutine and drain an (async) generator into a list."""
    if inspect.iscoroutine(value):
        value = await value
    if inspect.isasyncgen(value):
        return [item async for item in value]
    if inspect.isgenerator(value):
        return list(value)
    return value


def _call_and_list(op: Op, state: State, props: Properties) -> Any:
    out = op.call(state, props)
    if inspect.iscoroutine(out) or inspect.isasyncgen(out):
        return call_sync(collect(out))
    return list(out) if inspect.isgenerator(out) else out


def open_items(_: Any, op: Op, state: State, props: Properties) -> Iterator[Any]:
    """Call a streaming serve op from sync code: an iterator over its items."""
    out = op.call(state.copy(), props)
    if inspect.isasyncgen(out) or inspect.iscoroutine(out):
        out = call_sync(collect(out))
    return iter(out if iterable(out) else [out])


async def aopen_items(_: Any, op: Op, state: State, props: Properties) -> Any:
    """Call a streaming serve op on the event loop: an (async) iterator over its items."""
    out = op.call(state.copy(), props)
    if inspect.iscoroutine(out):
        out = await out
    if inspect.isasyncgen(out):
        return out
    return iter(out if iterable(out) else [out])


def next_item(_: Any, items: Iterator[Any], end: Any) -> Any:
    """The next item of :func:`open_items`' iterator, or ``end``."""
    return next(items, end)


async def anext_item(_: Any, items: Any, end: Any) -> Any:
    """The next item of :func:`aopen_items`' iterator, or ``end``."""
    if inspect.isasyncgen(items):
        return await anext(items, end)
    return next(items, end)


def call_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
