"""The ``motion.ready`` task: one wake-up that starts the drains of many ready instances.

An enqueue that finds its instance idle puts it on its queue's *ready list* and
pushes a ``motion.ready`` message only when none is out for that list
(``lua/enqueue.lua``, ``lua/ready_lib.lua``), so a burst over N instances costs a
few Celery messages, not N. The task takes instances off the list (``lua/ready.lua``)
as long as it has free :class:`Capacity` and starts each one's drain
(:func:`motion.worker.engine.drain_steps`, the same drain as ``motion.apply``'s):

- under ``-P threads`` (and ``-P gevent``, whose threads are greenlets) on a
  process-wide pool of as many threads as the worker's concurrency; a drain whose op
  awaits moves on to the event loop (:mod:`motion.floor.awaits`) and frees its thread;
- under prefork (and solo, and any pool it does not know) on the task's own thread,
  one at a time, as ``motion.apply`` does: a child drains one instance at a time.

A pooled task that empties its list keeps its place in the count for up to
:data:`LINGER` seconds and waits on the list itself: an instance that becomes ready
meanwhile is pushed with no message and its drain starts at once, so a burst of
enqueues spread over time starts each drain without a Celery delivery. The wait pops
nothing: the take after it does, and marks what it takes as being delivered, as every
take does. Only a task younger than :data:`TAKE_FOR` with a slot to spare lingers (a
worker whose slots are all busy leaves new instances to a message, for a worker with
room); prefork children never do (they drain one at a time). A worker that begins to
shut down (:func:`leave`) takes no more: its tasks count out and leave their lists to
other workers.

The list keeps what the task has no capacity for: a task that takes a full share
leaves the rest for its next take, and the script pushes a sibling message (at most
:data:`MAX_OUT` out per list) for another worker. The script counts a task out in the
same call that finds the list empty, so no instance is left on it with no task coming.

The task's result (Flower) maps each instance it drained to its seqs
(:meth:`DrainReport.summary`: ``{'instances': {'Comp__a': '1-2', ...}}``); it raises
:class:`DrainFailedError`, once everything is committed, if a drain recorded failures.
A worker killed with instances it took leaves them pending (their wake-up marked as
being delivered, or their lease expiring): the sweeper re-wakes them.

Worker road; uses the worker road (engine, lease), the definition layer (component,
definitions), the floor (awaits, connection, errors, inbox, keys, outcome,
scripts, settings, store, wakeup).
"""

from __future__ import annotations

import concurrent.futures
import logging
import threading
import time
from typing import Any

import redis

from motion.define import definitions
from motion.define.component import lookup
from motion.floor import keys as K
from motion.floor import scripts, store, wakeup
from motion.floor.awaits import run_or_hand_off
from motion.floor.connection import get_redis
from motion.floor.errors import DrainFailedError
from motion.floor.inbox import failure_summary
from motion.floor.outcome import DrainReport
from motion.floor.settings import get_settings
from motion.worker import engine
from motion.worker import lease as leases

log = logging.getLogger("motion.ready")

#: most motion.ready messages out per ready list (a task that leaves instances on the
#: list pushes a sibling for another worker while fewer are out)
MAX_OUT = 4
#: most instances one take moves off the list
TAKE = 256
#: the most characters of a result Celery logs and Flower shows (Celery's default, 1,024,
#: would cut off the seqs of all but a few dozen instances)
RESULT_REPR = 1 << 20
#: most names a take that begins their drains moves off the list (each ``begin`` runs
#: in the same script: 32 keep it to about a millisecond of Redis' time)
FOLD = 32
#: the largest state (Redis' ``MEMORY USAGE``, bytes) such a take returns with a name;
#: a larger one the drain reads itself, unless its own copy is current
STATE_LIMIT = 64 * 1024
#: how often (seconds) a task waiting for capacity renews its ready list's count
RENEW = wakeup.READY_TTL_MS / 4000
#: how long (seconds) a pooled task waits on its emptied list for the next instance
LINGER = 0.05
#: a task takes instances for this long (seconds) after it started, and a pooled one
#: lingers only within it: then it counts out and leaves what is left to a new message,
#: so one task's result (Flower) stays a burst's, not a day's, and a long list does not
#: keep a worker that was told to stop (a prefork child drains one at a time)
TAKE_FOR = 5.0
#: set when this worker begins to shut down: its ready tasks take no more instances and
#: hand their lists on (a worker told to stop does not start new drains)
LEAVING = threading.Event()
#: pools whose concurrency is threads (or greenlets): drains run on a pool of that size
THREADED_POOLS = ("threads", "gevent", "eventlet")
#: pools whose takes do not begin the drains: a greenlet's drain opens its connection
#: with its ``begin`` (gevent resolves and connects in its threadpool, slowly), and with
#: the ``begin`` in the take, a burst's drains would all open theirs at their commits,
#: at once, where the burst's last commit waits for them (1,000 sync drains of W10:
#: 1.6x the ideal against 1.2x)
GREENLET_POOLS = ("gevent", "eventlet")


class Capacity:
    """How many drains this process may run at once beside its tasks, and a pool of
    threads for them (none: the task drains on its own thread, one at a time)."""

    def __init__(self, size: int = 0) -> None:
        self._cond = threading.Condition()
        self._busy = 0
        self.size = size
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        #: whether a take begins the drains it starts (see :data:`GREENLET_POOLS`)
        self.folds = True

    def resize(self, size: int) -> None:
        """Run up to ``size`` drains at once on a pool (0: on the task's thread)."""
        with self._cond:
            self.size = size
            self._cond.notify_all()

    def take(self, most: int, waiting: Any = None, wait: bool = True) -> int:
        """Wait until a slot is free (unless not ``wait``), then reserve up to ``most``
        free slots: how many (maybe 0 without ``wait``). ``waiting()`` is called every
        :data:`RENEW` seconds while it waits."""
        with self._cond:
            while wait and self._busy >= self.size:
                if not self._cond.wait(RENEW) and waiting is not None:
                    waiting()
            got = max(min(most, self.size - self._busy), 0)
            self._busy += got
            return got

    def give(self, count: int = 1) -> None:
        """Free ``count`` slots."""
        with self._cond:
            self._busy -= count
            self._cond.notify_all()

    def submit(self, fn: Any, *args: Any) -> concurrent.futures.Future[Any]:
        """Run ``fn(*args)`` on the pool; its slot is freed when it returns."""
        with self._cond:
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    max(self.size, 1), thread_name_prefix="motion-ready"
                )
            pool = self._pool

        def run() -> Any:
            try:
                return fn(*args)
            finally:
                self.give()

        return pool.submit(run)


CAPACITY = Capacity()


def leave() -> None:
    """This worker is shutting down (Celery's ``worker_shutting_down``): its ready tasks
    end their takes, counted out, and an instance on their lists comes with a message
    for another worker."""
    LEAVING.set()


def _going() -> bool:
    """Whether this process stops taking instances (its worker stops or shuts down)."""
    return engine.STOPPING.is_set() or LEAVING.is_set()


def configure(pool: str, concurrency: int) -> None:
    """Size :data:`CAPACITY` for a worker of Celery pool ``pool`` (``threads``,
    ``prefork`` ...) and ``concurrency``: threaded pools drain on a pool of that size."""
    threaded = pool in THREADED_POOLS
    CAPACITY.resize(max(concurrency, 1) if threaded else 0)
    CAPACITY.folds = pool not in GREENLET_POOLS


def _drain(name: str, begun: Any = None) -> DrainReport:
    """Drain instance ``name`` here until its first await (then on the event loop);
    ``begun``: the ``begin`` reply the take brought for it."""
    component, instance_id = K.split_instance_name(name)
    comp = lookup(component)
    report = DrainReport(K.instance_name(comp.name, instance_id))
    run_or_hand_off(engine.drain_steps(comp, instance_id, report, begun), report)
    return report


Taken = list[tuple[str, Any]]  # (name, the begin reply the take brought for it, or None)


def _take(
    client: Any, ready: str, component: str, most: int, keep: bool = False, begin: bool = False
) -> tuple[int, Taken]:
    """Up to ``most`` names off the list ``ready``, and whether it may hold more (1), is
    empty (0: this task is counted out) or is empty and this task still counts (2, with
    ``keep``: it may wait on the list for the next name). With ``begin``, at most
    :data:`FOLD` names, and the take begins each one's drain (``lua/begin_lib.lua``):
    each comes with its ``begin`` reply."""
    queue = wakeup.ready_queue(ready)
    keys = [ready, ready + ":n", queue]
    folded = begin and most > 0
    most = min(most, FOLD) if folded else most
    args: list[Any] = [most, MAX_OUT, component, wakeup.ready_ttl_ms(), "1" if keep else ""]
    if folded:
        keys += [K.stats(component), K.PENDING, K.SWEEP]
        budget = max(get_settings().batch_bytes // most, 1)
        args += [leases.lease_ms(), engine.WINDOW, store.nonce(), budget, STATE_LIMIT]
    reply = scripts.run(client, "ready", keys, args, fast=True)
    if not folded:
        return int(reply[0]), [(raw.decode(), None) for raw in reply[1:]]
    pairs = zip(reply[1::2], reply[2::2], strict=True)
    return int(reply[0]), [(raw.decode(), begun) for raw, begun in pairs]


def _wait(client: Any, ready: str) -> bool:
    """Whether a name is on ``ready`` within :data:`LINGER` seconds. It stays there (a
    ``BLMOVE`` of the list onto itself moves nothing): the take that follows pops it and
    marks it as being delivered, so a worker that dies before its drain begins leaves it
    for the sweeper."""
    try:
        return client.blmove(ready, ready, LINGER, "LEFT", "LEFT") is not None
    except redis.RedisError as exc:  # the final take counts this task out
        log.warning("waiting on ready list %s failed (%r)", ready, exc)
        return False


def _renew(client: Any, ready: str) -> None:
    """Keep ``ready``'s count alive while this task waits for capacity (it still counts)."""
    try:
        client.pexpire(ready + ":n", wakeup.ready_ttl_ms())
    except redis.RedisError as exc:  # the count expires: the next enqueue sends another
        log.warning("renewing ready list %s failed (%r)", ready, exc)


def ready_task(component: Any, ready: Any) -> dict[str, Any]:
    """The ``motion.ready`` task (registered by :mod:`motion.worker.tasks`): drain the
    instances on ready list ``ready`` of ``component``'s queue while it has capacity."""
    if not isinstance(component, str) or not isinstance(ready, str):
        raise TypeError(
            f"motion.ready takes (component: str, ready_list: str); got ({component!r}, {ready!r})"
        )
    if not wakeup.is_ready_list(component, ready):  # before any Redis call
        raise ValueError(
            f"motion.ready names {ready!r}, which is not a ready list of component "
            f"{component!r} (motion:ready:motion.{component}.<n>): the message is malformed "
            f"or was not sent by motion; nothing was read or written"
        )
    client = get_redis()
    # the take begins the drains (one round trip for them all) when this process has
    # the component's code; without it, each drain reports the missing code
    begin = CAPACITY.folds and definitions.newest(component) is not None
    reports: list[DrainReport] = []
    running: list[tuple[str, concurrent.futures.Future[Any]]] = []
    more, idle, started, held = 1, False, time.monotonic(), 0
    while more and not _going():
        pooled = CAPACITY.size > 0
        if not pooled:
            most = 1
        elif held:  # the slot it waited with, and any free now
            most = held + CAPACITY.take(TAKE - held, wait=False)
        else:
            most = CAPACITY.take(TAKE, lambda: _renew(client, ready))
        held = 0
        # a pooled task young enough, with a slot to spare, lingers on the list for the
        # next instance (a burst of enqueues starts each drain at once, with no message
        # of its own); one with no slot to spare counts out, so an instance made ready
        # while its drains run comes with a message, for a worker with room
        young = time.monotonic() - started < TAKE_FOR
        keep = pooled and most > 1 and not idle and young
        try:
            more, names = _take(client, ready, component, most - 1 if keep else most, keep, begin)
        except BaseException:
            if pooled:
                CAPACITY.give(most)
            raise
        if pooled:
            # the last of a final take runs here: this thread would only wait otherwise
            inline = names.pop() if names and not more else None
            held = 1 if more == 2 else 0  # the spare slot it waits with
            CAPACITY.give(most - len(names) - held)
            running += [(name, CAPACITY.submit(_drain, name, begun)) for name, begun in names]
        else:
            inline = names[0] if names else None
        if inline is not None:
            name, begun = inline
            reports.append(_drained(name, lambda n=name, b=begun: _drain(n, b)))
        # empty, and still counted: wait for a name on the list, then take it; if none
        # comes, the next take (with the slot kept) counts this task out
        if more == 2 and (_going() or not _wait(client, ready)):
            idle = True
        if more == 1 and not young:  # (the rest goes to a new message: see TAKE_FOR)
            break
    CAPACITY.give(held)  # (the worker stops while it held a slot)
    if more:  # the worker stops, or the task is old: leave the rest, counted out
        try:
            _take(client, ready, component, 0)
        except redis.RedisError as exc:  # the count expires by itself
            log.warning("leaving ready list %s failed (%r)", ready, exc)
    reports += [_drained(name, future.result) for name, future in running]
    return _result(reports)


def _drained(name: str, get: Any) -> DrainReport:
    """The report of the drain of ``name`` (``get()``); a drain that raised (Redis
    away, code missing) left the instance pending for the sweeper: reported so."""
    try:
        report: DrainReport = get()
        return report
    except Exception as exc:
        log.warning("draining %s failed (%r); its updates stay pending", name, exc)
        report = DrainReport(name)
        report.skipped = f"failed: {exc!r}"
        return report


def _result(reports: list[DrainReport]) -> dict[str, Any]:
    """The task's result, or :class:`DrainFailedError` if a drain recorded failures."""
    failed = [r for r in reports if r.failed]
    if failed:
        raise DrainFailedError(
            "\n".join(
                failure_summary(r.instance, r.failed, r.applied, r.seqs, r.failures) for r in failed
            )
            + "".join(f"\n{r.instance}: applied seqs {r.seqs}" for r in reports if not r.failed)
        )
    instances: dict[str, str] = {}
    for r in reports:  # an instance drained twice by one task (idle again, re-taken): both
        seen = instances.get(r.instance)
        instances[r.instance] = r.summary() if seen is None else f"{seen}; {r.summary()}"
    return {"instances": instances}
