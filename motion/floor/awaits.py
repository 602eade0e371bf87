"""Waits, sans-I/O: a step generator yields what it waits for, a driver does the waiting.

A drain (:func:`motion.worker.engine.drain_steps`) is written once as a generator:
where an op returns a coroutine (an ``async def`` op) or a retry backs off, it
*yields* the coroutine or a :class:`Pause` and receives the result (or has the error
thrown in at the ``yield``). Two drivers run it:

- :func:`run_sync` on the calling thread: a coroutine is run to completion on this
  thread's own event loop, a pause is ``time.sleep`` (the plain synchronous drain);
- :data:`LOOP` (:func:`run_or_hand_off`): the steps run on the calling thread (a
  Celery pool thread) until their first coroutine; then they are handed to this
  process's one event loop (a daemon thread, started on first use) and the caller
  returns at once. So a worker of ``-P threads -c 8`` (or a prefork child) awaits
  any number of ``async def`` ops at a time, not one per pool thread.

On the loop, each handed-off generator is a coroutine (:meth:`DrainLoop._drive`)
that awaits its coroutines and pauses; the synchronous stretches between two awaits
(Redis round trips, sync hooks) run on a small thread pool, so the loop never blocks
on Redis. The drain keeps its lease (the renewer thread renews it) until its last
commit releases it, as on a pool thread; a worker killed meanwhile leaves the lease
to expire and the sweeper to re-wake the instance: nothing is lost, only delayed.

Stopping (:meth:`DrainLoop.stop`, at the worker's shutdown): the drains are given
``wait`` seconds to finish (the engine's ``STOPPING`` flag makes each stop after the
update it is applying); the coroutines still awaited then are cancelled, and their
generators closed (``GeneratorExit``: the drain releases its lease, the updates stay
pending for the next worker; cancelling is not an update's failure).

Floor: uses nothing else of motion.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from collections.abc import Callable, Generator
from typing import Any, NamedTuple, Protocol, TypeVar

log = logging.getLogger("motion.loop")

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


class Report(Protocol):
    """What the loop needs of a drain's report (:class:`motion.floor.outcome.DrainReport`)."""

    instance: str
    applied: int
    failed: int
    seqs: str | None

    def handed_off(self) -> None: ...

    def as_dict(self) -> dict[str, Any]: ...


T = TypeVar("T")


class Pause(NamedTuple):
    """A wait of ``seconds`` (a retry's back-off), yielded to the driver."""

    seconds: float


#: a drain's steps: yields coroutines and pauses, returns its result
Waits = Generator[Any, Any, T]


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


#: threads running the drains' synchronous stretches (Redis round trips, sync hooks)
SYNC_THREADS = 8


def _step(steps: Waits[Any], value: Any, error: BaseException | None) -> tuple[bool, Any]:
    """:func:`resume`, as ``(done, result or next wait)`` (a StopIteration cannot cross
    a future)."""
    try:
        return False, resume(steps, value, error)
    except StopIteration as done:
        return True, done.value


class DrainLoop:
    """One process's event loop for drains, and the drains it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pid = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sync: concurrent.futures.ThreadPoolExecutor | None = None
        self._drains: set[concurrent.futures.Future[Any]] = set()
        self._waits: set[asyncio.Future[Any]] = set()  # the ops being awaited now

    def _started(self) -> tuple[asyncio.AbstractEventLoop, concurrent.futures.Executor]:
        """The running loop and sync pool of this process (started again after a fork)."""
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="motion-loop", daemon=True)
                thread.start()
                self._loop, self._pid = loop, os.getpid()
                self._sync = concurrent.futures.ThreadPoolExecutor(
                    SYNC_THREADS, thread_name_prefix="motion-drain"
                )
                self._drains, self._waits = set(), set()
            assert self._sync is not None
            return self._loop, self._sync

    def submit(self, steps: Waits[Report], first: Any, report: Report) -> None:
        """Run the rest of a drain (``steps``, whose next wait is ``first``) on the loop."""
        loop, sync = self._started()
        future = asyncio.run_coroutine_threadsafe(self._drive(steps, first, report, sync), loop)
        with self._lock:
            self._drains.add(future)
        future.add_done_callback(self._finished)

    def _finished(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._drains.discard(future)

    async def _drive(
        self,
        steps: Waits[Report],
        step: Any,
        report: Report,
        sync: concurrent.futures.Executor,
    ) -> None:
        loop = asyncio.get_running_loop()
        while True:
            value: Any = None
            error: BaseException | None = None
            wait = asyncio.ensure_future(
                asyncio.sleep(step.seconds) if isinstance(step, Pause) else step
            )
            self._waits.add(wait)
            try:
                value = await wait
            except asyncio.CancelledError:  # the worker stops: leave the updates pending
                await loop.run_in_executor(sync, steps.close)  # releases the lease
                log.info(
                    "%s: drain stopped with the worker; its updates stay pending", report.instance
                )
                return
            except BaseException as exc:  # thrown back in: the drain decides what it means
                error = exc
            finally:
                self._waits.discard(wait)
            try:
                done, step = await loop.run_in_executor(sync, _step, steps, value, error)
            except Exception as exc:  # Redis away: the lease was released, the updates wait
                log.warning("draining %s on the event loop failed: %r", report.instance, exc)
                return
            if done:
                _log_outcome(report)
                return

    def busy(self) -> int:
        """How many drains run on the loop now."""
        with self._lock:
            return len(self._drains) if self._pid == os.getpid() else 0

    def stop(self, wait: float) -> None:
        """Give the drains ``wait`` seconds to finish, then cancel the ops they await
        (their updates stay pending) and wait for them to close."""
        with self._lock:
            loop = self._loop if self._pid == os.getpid() else None
        if loop is None:
            return
        deadline = time.monotonic() + wait
        while self.busy() and time.monotonic() < deadline:
            time.sleep(0.02)
        if self.busy():
            loop.call_soon_threadsafe(lambda: [w.cancel() for w in list(self._waits)])
            closing = time.monotonic() + 10.0
            while self.busy() and time.monotonic() < closing:
                time.sleep(0.02)


def _log_outcome(report: Report) -> None:
    if report.failed:
        log.warning(
            "%s: %d updates failed (%s), %d applied",
            report.instance,
            report.failed,
            report.seqs,
            report.applied,
        )
    else:
        log.debug("%s: drained on the event loop: %s", report.instance, report.as_dict())


LOOP = DrainLoop()


def run_or_hand_off(steps: Waits[Report], report: Report) -> bool:
    """Run a drain's ``steps`` on this thread until an op awaits, then hand the rest to
    :data:`LOOP`: ``True`` if handed off (``report`` then says what this task took),
    ``False`` if the drain finished here (``report`` is its whole outcome)."""
    value: Any = None
    error: BaseException | None = None
    while True:
        try:
            step = resume(steps, value, error)
        except StopIteration:
            return False
        value, error = None, None
        if not isinstance(step, Pause):  # a coroutine: await it, and the rest, on the loop
            report.handed_off()
            LOOP.submit(steps, step, report)
            return True
        try:
            value = wait_here(step)
        except BaseException as exc:  # thrown back in: the drain decides what it means
            error = exc
