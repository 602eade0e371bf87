"""The worker process's event loop: drains whose ops await run there, concurrently.

A ``motion.apply`` task starts its drain on the pool thread (:func:`run_or_hand_off`):
the ``begin`` script, the state, the first window. When an op returns a coroutine
(an ``async def`` op, typically waiting seconds on an LLM), the drain is handed to
this process's one event loop (a daemon thread, started on first use) and the task
returns at once, its result naming the updates it took (``seqs``) and ``continued:
"on the event loop"``. So a worker with ``-P threads -c 64`` (or a prefork child)
awaits any number of ops at a time instead of one per pool thread.

On the loop, each drain is a coroutine (:meth:`DrainLoop._drive`) that awaits its
ops' coroutines and its retries' pauses; the synchronous stretches between two awaits
(running sync hooks, encoding, the ``commit`` script: Redis round trips) run on a
small thread pool, so the loop never blocks on Redis. The drain keeps its lease (the
renewer thread renews it) until its last commit releases it, exactly as on a pool
thread; a worker killed meanwhile leaves the lease to expire and the sweeper to
re-wake the instance: nothing is lost, only delayed.

Stopping (:meth:`DrainLoop.stop`, at the worker's shutdown): the drains are given
``wait`` seconds to finish (the engine's ``STOPPING`` flag makes each stop after the
update it is applying); the ops still awaited then are cancelled, and their drains
are closed, which releases their leases with the updates left pending for the next
worker (cancelling is not an update's failure).

Worker road; uses the worker road (drainreport, opcall).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
from typing import Any

from motion.worker.drainreport import DrainReport
from motion.worker.opcall import Pause, Waits, resume, wait_here

log = logging.getLogger("motion.loop")

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

    def submit(self, steps: Waits[DrainReport], first: Any, report: DrainReport) -> None:
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
        steps: Waits[DrainReport],
        step: Any,
        report: DrainReport,
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


def _log_outcome(report: DrainReport) -> None:
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


def run_or_hand_off(steps: Waits[DrainReport], report: DrainReport) -> bool:
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
