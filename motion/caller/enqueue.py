"""Handing a handle's updates to a worker, and keeping account of who enqueued them.

:class:`Enqueuer` makes one script call (``lua/enqueue.lua``): it takes the next seq,
stores the update in the inbox, marks the instance pending and, when the broker is
the state Redis, pushes the wake-up itself (else the caller sends it through Celery
after the enqueue). Each call carries a token (of its ``dedup_key``, or of a random
key), so the Redis client re-sending the script after a lost reply finds the update
it stored instead of storing it twice, and so does a retry with the same key. With
``expect``, the script enqueues only if the state is still at that version (the one
the serve op ran on). A new instance is created on first use.
Written once, sans-I/O (:mod:`motion.floor.drive`), for the sync and async handle.

Which call reports each failed update: one handle may be shared by any number of
threads and asyncio tasks, and every update it enqueues belongs to the *caller* that
enqueued it (the asyncio task running at the time, else the thread). The rule (also
in ``docs/api.md``):

- ``run(..., flush_update=True)``, ``write_state`` and their async twins raise
  the failure of exactly the update that call enqueued.
- ``flush_update()`` raises the failures, among this handle's updates enqueued
  before the call (of its flow), of the updates its own caller enqueued, and of
  those whose caller can no longer flush them (its thread ended, its task is
  done), that no other call reported yet.
- Each failure is reported to one call at most; one not reported yet stays for
  a later flush. (A flush never takes the failure of a caller still running, so
  it cannot take the one a concurrent ``run(..., flush_update=True)`` waits for.)

:class:`FailureBook` keeps that account for one handle (no I/O);
:mod:`motion.caller.wait` feeds it the failure records it reads from Redis.

Caller road; uses the caller road (host), the definition layer (component), the floor
(cache, celery_app, connection, directory, drive, errors, inbox, keys, wakeup).
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from motion.caller import host
from motion.floor import cache, directory, drive, wakeup
from motion.floor import keys as K
from motion.floor.connection import get_async_redis, get_redis, translate_errors
from motion.floor.drive import Steps
from motion.floor.errors import (
    DeadLetterNotFoundError,
    FailedUpdate,
    ReplicationTimeoutError,
    TooManyPendingError,
)
from motion.floor.inbox import (
    ALL_FLOWS,
    Update,
    encode,
    enqueue_call,
    keyed,
    token_for,
    wake_left,
)

if TYPE_CHECKING:
    from motion.define.component import Component

Enqueued = tuple[int, bytes | None]  # (seq, the incarnation the update joined)
CacheWrite = cache.Entry | None  # a serve-cache entry stored in the enqueue's round trip

log = logging.getLogger("motion")

#: most updates a handle remembers before its first wait (beyond it, the oldest
#: become anybody's: reported to any flush, as if enqueued by a finished caller)
MAX_OPEN = 100_000
#: most failures a handle keeps for a flush that never comes (the oldest go)
MAX_FAILED = 10_000

_Caller = weakref.ReferenceType[Any]


class Enqueuer:
    """Enqueues updates of one instance (for its handle)."""

    def __init__(
        self,
        component: Component,
        instance_id: str,
        create: Callable[[], Steps[Any]],
        remember: Callable[[list[Any]], None],
        *,
        timeout: float | None = None,
    ) -> None:
        self._component = component
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._id = instance_id
        # the reader's (motion.caller.serve.Reader): create the instance; keep a state
        self._create, self._remember = create, remember
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))
        self._hosted = False  # whether this process's in-process worker was seen to

    def enqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Enqueue ``update`` (storing ``cache_write`` in the same round trip): its seq
        and incarnation, or ``None`` when the state is no longer at version tag
        ``expect``."""
        client = get_redis(self._keys.name, self._timeout)
        return drive.drive(self.steps(update, cache_write, expect), client)

    async def aenqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Async :meth:`enqueue`."""
        client = get_async_redis(self._keys.name, self._timeout)
        return await drive.adrive(self.steps(update, cache_write, expect), client)

    def steps(
        self,
        update: Update,
        cache_write: CacheWrite = None,
        expect: bytes = b"",
        *,
        delay_ms: int | None = None,
        retry_of: int | None = None,
        dedup_key: str | None = None,
    ) -> Steps[Enqueued | None]:
        """The steps of :meth:`enqueue`; ``delay_ms`` makes the update a timer,
        ``retry_of`` re-enqueues that dead letter (:class:`DeadLetterNotFoundError`
        if it is not one any more), ``dedup_key`` names the update (a retry with the
        same key enqueues once; none: a random one, which a
        :class:`ReplicationTimeoutError` carries)."""
        name = self._keys.name
        dedup_key, token = token_for(dedup_key)
        with translate_errors(f"enqueueing {update.flow!r} for {name}", name), keyed(dedup_key):
            entry = encode(self._component, self._keys.name, update)
            push, ready = wakeup.to_push(self._component.name, self._id, update.flow)
            keys, args = enqueue_call(
                self._keys,
                entry,
                update.flow,
                push,
                expect=expect,
                token=token,
                delay_ms=delay_ms,
                retry_of=retry_of,
                ready=ready,
            )
            if cache_write is None:
                step = drive.script("enqueue", keys, args, fast=True)
            else:
                step = drive.script_after(("cache", cache_write.call()), "enqueue", keys, args)
            reply = yield from self._listed(step, update.flow)
            if reply[0] == 0:  # a new instance: create it, then enqueue
                yield from self._create()
                reply = yield from self._listed(drive.script("enqueue", keys, args), update.flow)
            if reply[0] == -1:  # keep the state it returned, so the caller serves again
                self._remember(reply)
                return None
            if reply[0] == -2:  # held, and full: see motion.caller.control
                raise TooManyPendingError(
                    f"{name} holds {reply[1]} updates while a flow of it is paused "
                    f"(MOTION_MAX_PENDING); resume it (handle.resume) or drop updates "
                    f"before enqueueing more."
                )
            if reply[0] == -3:  # retry_of names no dead letter (any more)
                raise DeadLetterNotFoundError(
                    f"{name}: update #{retry_of} is no longer a dead letter (dropped or "
                    "retried meanwhile); see handle.failed_updates()."
                )
        if not self._hosted:  # (the answer cannot change once this process has checked)
            host.ensure_worker()
            self._hosted = True
        seq = int(reply[0])
        if reply[1] == 1:  # the script could not push the wake-up (another broker)
            yield drive.compute(send_wakeup_sync, self._component.name, self._id, update.flow, seq)
        return seq, reply[2] if len(reply) > 2 else None

    def _listed(self, step: drive.Step, flow: str) -> Steps[Any]:
        """Run the enqueue script (``step``, of ``flow``); its reply. On a cluster, list
        the sweep schedule's part it made the instance the lowest of
        (:mod:`motion.floor.directory`). Also when the wait for the replicas timed out
        (the update is on the primary): then the wake-up the script left to this caller
        is sent before the error is raised (the script marked one in flight, so later
        enqueues and a retry with the ``dedup_key`` send none)."""
        try:
            reply = yield step
        except ReplicationTimeoutError as exc:
            yield from self._list(exc.reply)
            if wake_left(exc.reply):
                seq = int(exc.reply[0])
                yield drive.compute(send_wakeup_sync, self._component.name, self._id, flow, seq)
            raise
        yield from self._list(reply)
        return reply

    def _list(self, reply: Any) -> Steps[None]:
        listed = directory.enqueue_listed(reply)
        if listed:
            note = directory.note_command(K.SWEEP, self._keys.name, listed)
            try:
                yield drive.command("execute_command", *note)
            except redis.RedisError:  # stored: the directory's full pass lists it
                log.warning("%s: its part of the sweep schedule is not listed", self._keys.name)


def wakeup_to_push(component: str, instance_id: str, flow: str) -> tuple[str, bytes] | None:
    """The wake-up message the enqueue script should push itself, or ``None``.

    ``None`` when the Celery broker is not the state Redis (``MOTION_BROKER_URL``):
    then the caller sends the wake-up through Celery after the enqueue.
    """
    if not wakeup.inline():
        return None
    return wakeup.message(component, instance_id, flow)


def send_wakeup_sync(component: str, instance_id: str, flow: str, seq: int) -> None:
    """Send a wake-up; if the broker is unreachable, the sweeper re-sends it later.

    The update itself is already safe in the inbox when this runs, so a failed
    send is logged, not raised: the instance stays pending until swept.
    """
    from motion.floor.celery_app import send_wakeup  # loads Celery: only for another broker

    try:
        send_wakeup(component, instance_id, flow, seq)
    except Exception as exc:  # kombu/redis errors: the update is durable, the sweeper recovers
        log.warning(
            "wake-up for %s__%s #%d not sent (%s); the sweeper will re-send it",
            component,
            instance_id,
            seq,
            exc,
        )


def current_caller() -> Any:
    """The asyncio task running now, else the current thread."""
    loop = asyncio.events._get_running_loop()  # None outside a loop, without raising
    task = asyncio.current_task(loop) if loop is not None else None
    return task if task is not None else threading.current_thread()


def _gone(caller: _Caller | None) -> bool:
    """Whether ``caller`` can no longer flush (``None``: nobody's)."""
    if caller is None:
        return True
    obj = caller()
    if obj is None:
        return True
    if isinstance(obj, asyncio.Future):
        return obj.done()
    return not obj.is_alive()


class FailureBook:
    """The updates one handle enqueued whose outcome it has not seen yet, and the
    failures among them not yet reported, each with the caller that enqueued it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[int, _Caller] = {}  # seq -> its caller; outcome not seen yet
        self._anybody: tuple[int, int] | None = None  # seqs past MAX_OPEN: anybody's
        self._failed: dict[int, tuple[_Caller | None, FailedUpdate]] = {}

    def enqueued(self, seq: int) -> None:
        """Note that the current caller enqueued update ``seq``."""
        caller = weakref.ref(current_caller())
        with self._lock:
            self._open[seq] = caller
            if len(self._open) > MAX_OPEN:
                oldest = sorted(self._open)[: MAX_OPEN // 2]
                for old in oldest:
                    del self._open[old]
                low, high = oldest[0], oldest[-1]
                if self._anybody is not None:
                    low, high = min(low, self._anybody[0]), max(high, self._anybody[1])
                self._anybody = (low, high)

    def drop_open(self) -> list[int]:
        """Forget every update whose outcome is not seen yet (its incarnation is gone:
        it will never be applied); their seqs, for the error that says so."""
        with self._lock:
            seqs = sorted(self._open)
            if self._anybody is not None:
                seqs.append(self._anybody[0])
            self._open.clear()
            self._anybody = None
            return seqs

    def has_open(self) -> bool:
        """Whether some update's outcome is not seen yet."""
        with self._lock:
            return bool(self._open) or self._anybody is not None

    def unseen_from(self, target: int | None = None) -> int | None:
        """The lowest seq up to ``target`` (default: any) whose outcome is not seen yet
        (read the failure records from there), or ``None``: nothing to read. (The lowest
        of all is the lowest up to ``target`` whenever it is at most ``target``.)"""
        if target is None:
            target = sys.maxsize
        with self._lock:
            low = min((seq for seq in self._open if seq <= target), default=None)
            if self._anybody is not None and self._anybody[0] <= target:
                low = self._anybody[0] if low is None else min(low, self._anybody[0])
            return low

    def seen(self, low: int, target: int, failures: list[FailedUpdate]) -> None:
        """Every update from ``low`` to ``target`` is applied; ``failures`` are the
        failure records of that range (all flows)."""
        by_seq = {failure.seq: failure for failure in failures}
        with self._lock:
            for seq in [s for s in self._open if low <= s <= target]:
                caller = self._open.pop(seq)
                if seq in by_seq:
                    self._failed[seq] = (caller, by_seq[seq])
            if self._anybody is not None and self._anybody[0] >= low:
                first, last = self._anybody
                for seq, failure in by_seq.items():
                    if first <= seq <= min(last, target):
                        self._failed.setdefault(seq, (None, failure))
                self._anybody = (target + 1, last) if last > target else None
            while len(self._failed) > MAX_FAILED:
                del self._failed[min(self._failed)]

    def claim_own(self, seq: int) -> list[FailedUpdate]:
        """The failure of update ``seq`` (if it failed), for the call that enqueued it."""
        with self._lock:
            found = self._failed.pop(seq, None)
        return [] if found is None else [found[1]]

    def claim(self, flow: str, target: int) -> list[FailedUpdate]:
        """The failures a flush of ``flow`` up to ``target`` by the current caller reports."""
        me = current_caller()
        with self._lock:
            mine = [
                seq
                for seq, (caller, failure) in self._failed.items()
                if seq <= target
                and flow in (ALL_FLOWS, failure.flow)
                and ((caller is not None and caller() is me) or _gone(caller))
            ]
            return [self._failed.pop(seq)[1] for seq in sorted(mine)]
