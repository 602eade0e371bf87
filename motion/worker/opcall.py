"""Calling one update op, sans-I/O: the retries, and the waits an op needs.

A drain is written once as a generator (:func:`motion.worker.engine.drain_steps`,
:func:`motion.worker.updates.apply_steps`): where an op returns a coroutine (an
``async def`` op) or a retry backs off, it *yields* what to wait for, a coroutine or
a :class:`Pause`, and receives the result (or has the error thrown in at the
``yield``). Two drivers run it:

- :func:`run_sync` on the calling thread: a coroutine is run to completion on this
  thread's own event loop, a pause is ``time.sleep`` (the plain synchronous drain);
- :mod:`motion.worker.loop`: the coroutines of many drains are awaited concurrently
  on one event loop per worker process, so an ``async def`` op waiting on an LLM holds
  no pool thread.

Worker road; uses the definition layer (component), the floor (props, settings).
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
import traceback
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, TypeVar

from motion.define.component import Op
from motion.floor.props import State
from motion.floor.settings import get_settings

T = TypeVar("T")


class Pause(NamedTuple):
    """A wait of ``seconds`` (a retry's back-off), yielded to the driver."""

    seconds: float


#: a drain's steps: yields coroutines and pauses, returns its result
Waits = Generator[Any, Any, T]


class OpFailed(Exception):
    """Op ``op`` failed on its last attempt with ``error`` (its traceback ``tb``)."""

    def __init__(self, op: str, error: BaseException, tb: str) -> None:
        super().__init__(op)
        self.op, self.error, self.tb = op, error, tb


#: process exit (SystemExit, which Celery's shutdown exceptions subclass, and
#: KeyboardInterrupt), and a driver closing the steps (GeneratorExit: the worker stops):
#: not an update's failure; it leaves the update pending. Any other BaseException an op
#: or hook raises is that update's recorded failure.
EXIT = (SystemExit, KeyboardInterrupt, GeneratorExit)


def _never() -> bool:
    return False


#: whether this process is in a cold shutdown (motion.worker.tasks plugs in Celery's flag): an
#: error an op raises then is taken as the shutdown cancelling it (Celery raises inside
#: the running task, a plain Exception in the solo pool), not as the update's failure;
#: it propagates and the update stays pending for the next worker
terminating: Callable[[], bool] = _never


def call(op: Op, working: State, props: Any) -> Waits[Any]:
    """Call an op (sync or async) with retries; raise :class:`OpFailed` after the last.

    An ``async def`` op's coroutine is yielded to the driver, which awaits it.
    """
    retries = op.retries if op.retries is not None else get_settings().update_retries
    for attempt in range(retries + 1):
        try:
            result = op.call(working.copy(), props)
            if inspect.iscoroutine(result):
                result = yield result
            return result
        except EXIT:
            raise
        except BaseException as exc:
            if terminating():
                raise
            if attempt == retries:
                raise OpFailed(op.name, exc, traceback.format_exc()) from exc
        yield Pause(min(0.1 * 2**attempt, 2.0))  # back off before the next try
    raise AssertionError("unreachable")


_loops = threading.local()


def await_here(coroutine: Any) -> Any:
    """Run ``coroutine`` to completion on this thread's own event loop."""
    loop = getattr(_loops, "loop", None)
    if loop is None:
        loop = _loops.loop = asyncio.new_event_loop()
    return loop.run_until_complete(coroutine)


def wait_here(step: Any) -> Any:
    """Do one yielded wait on this thread: a :class:`Pause` sleeps, a coroutine runs."""
    if isinstance(step, Pause):
        time.sleep(step.seconds)
        return None
    return await_here(step)


def resume(steps: Waits[Any], value: Any, error: BaseException | None) -> Any:
    """Hand ``steps`` the last wait's result (or throw its error in): the next wait.
    Raises :class:`StopIteration` (with the result) when the steps are done."""
    return steps.throw(error) if error is not None else steps.send(value)


def run_sync(steps: Waits[T]) -> T:
    """Run ``steps`` to their result on this thread (:func:`wait_here` for each wait)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = resume(steps, value, error)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's T
        value, error = None, None
        try:
            value = wait_here(step)
        except BaseException as exc:  # thrown back in: the steps decide what it means
            error = exc
