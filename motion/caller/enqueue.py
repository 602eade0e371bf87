"""Handing a handle's updates to a worker: the enqueue, the wake-up, the in-process worker.

Owns :class:`Enqueuer` (one script call, the instance created on first use), the
wake-ups a caller sends itself, and hosting the in-process worker: it starts on first
need when ``MOTION_INPROCESS_WORKER=1``, or by default when motion runs on its
embedded server or on Motion's configuration (``MOTION_REDIS_HOST``... or
``.motionrc.yml``), so a script, a notebook or a Motion program needs no separate
worker (the rule is written once, in :mod:`motion.floor.settings`). The worker itself
is the worker road's; :mod:`motion` hands it in with :func:`set_worker`, so this road
never imports that one. May use: the definition layer (types) and the floor.

The enqueue script (``lua/enqueue.lua``) takes the next seq, stores the update
in the inbox, marks the instance pending and, when the broker is the state
Redis, pushes the wake-up itself. Each call carries a fresh token, so the Redis
client re-sending the script after a lost reply finds the update it stored
instead of storing it twice. With ``expect``, the script enqueues only if the
state is still at that version (the one the serve op ran on).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motion.caller.serve import CacheWrite
from motion.floor import keys as K
from motion.floor import scripts, wakeup
from motion.floor.connection import get_async_redis, get_redis, is_embedded, translate_errors
from motion.floor.errors import ConfigurationError
from motion.floor.inbox import Update, encode, enqueue_call, new_token
from motion.floor.settings import get_settings

if TYPE_CHECKING:
    from motion.caller.read import Reader
    from motion.define.component import Component

Enqueued = tuple[int, bytes | None]  # (seq, the incarnation the update joined)

log = logging.getLogger("motion")

_worker: tuple[Callable[[], None], Callable[[], None]] | None = None
_worker_checked = False
_worker_lock = threading.Lock()
#: what to do at exit before the in-process worker stops: flush_on_exit handles' flushes
_exit_flushes: dict[int, Callable[[], None]] = {}
_exited = False


class Enqueuer:
    """Enqueues updates of one instance (for its handle)."""

    def __init__(
        self,
        component: Component,
        instance_id: str,
        reader: Reader,
        *,
        timeout: float | None = None,
    ) -> None:
        self._component = component
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._id = instance_id
        self._reader = reader
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))

    def enqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Enqueue ``update`` (storing ``cache_write`` in the same round trip): its seq
        and incarnation, or ``None`` when the state is no longer at version tag
        ``expect``."""
        keys, args = self._call(update, expect)
        name = self._keys.name
        with translate_errors(f"enqueueing {update.flow!r} for {name}", name):
            client = get_redis(name, self._timeout)
            if cache_write is None:
                reply = scripts.run(client, "enqueue", keys, args, fast=True)
            else:
                reply = scripts.run_after(
                    client, ("cache", cache_write.call()), "enqueue", keys, args
                )
            if reply[0] == 0:  # a new instance: create it, then enqueue
                self._reader.create(client)
                reply = scripts.run(client, "enqueue", keys, args)
        enqueued = self._enqueued(reply)
        if enqueued is not None and reply[1] == 1:
            # the script could not push it (another broker): send it now
            send_wakeup_sync(self._component.name, self._id, update.flow, enqueued[0])
        return enqueued

    async def aenqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Async :meth:`enqueue`."""
        keys, args = self._call(update, expect)
        name = self._keys.name
        with translate_errors(f"enqueueing {update.flow!r} for {name}", name):
            client = get_async_redis(name, self._timeout)
            if cache_write is None:
                reply = await scripts.arun(client, "enqueue", keys, args)
            else:
                reply = await scripts.arun_after(
                    client, ("cache", cache_write.call()), "enqueue", keys, args
                )
            if reply[0] == 0:
                await self._reader.aload()  # creates the instance
                reply = await scripts.arun(client, "enqueue", keys, args)
        enqueued = self._enqueued(reply)
        if enqueued is not None and reply[1] == 1:
            await send_wakeup_async(self._component.name, self._id, update.flow, enqueued[0])
        return enqueued

    def _call(self, update: Update, expect: bytes) -> tuple[list[str], list[Any]]:
        entry = encode(self._component, self._keys.name, update)
        push = wakeup_to_push(self._component.name, self._id, update.flow)
        token = new_token()
        return enqueue_call(self._keys, entry, update.flow, push, expect=expect, token=token)

    def _enqueued(self, reply: list[Any]) -> Enqueued | None:
        """Interpret the script's reply: the seq and incarnation, or ``None`` (the state
        moved on)."""
        if reply[0] == -1:  # keep the state it returned, so the caller serves again
            self._reader.remember(reply)
            return None
        ensure_worker()
        return int(reply[0]), reply[2] if len(reply) > 2 else None


def set_worker(start: Callable[[], None], stop: Callable[[], None]) -> None:
    """Hand in the in-process worker: ``start`` (idempotent) runs on first need,
    ``stop`` at exit. :mod:`motion` passes the worker road's
    (:mod:`motion.worker.inprocess`)."""
    global _worker
    _worker = (start, stop)


def inprocess_worker_wanted() -> bool:
    """Whether this process should run the in-process worker."""
    settings = get_settings()
    wanted = settings.inprocess_worker
    if wanted and settings.redis_shards:
        raise ConfigurationError(
            "MOTION_INPROCESS_WORKER=1 cannot serve MOTION_REDIS_SHARDS: run workers per "
            "shard (MOTION_REDIS_URL=<shard> celery -A workers worker -I <module>)."
        )
    if wanted is not None:
        return wanted
    # a Motion program (Motion's variables or .motionrc.yml) applied its updates in
    # the caller; a fleet configured with MOTION_REDIS_URL keeps them on its workers
    return is_embedded() or settings.motion_config


def ensure_worker() -> None:
    """Start the in-process worker if this process should run one (cheap after the first call)."""
    global _worker_checked
    if _worker_checked:
        return
    with _worker_lock:
        if not _worker_checked:
            if inprocess_worker_wanted():
                if _worker is None:
                    raise ConfigurationError(
                        "this process should run the in-process worker, but none was handed "
                        "to motion.caller.enqueue.set_worker (import motion, which does)."
                    )
                _worker[0]()
                _arm_exit(worker=True)
            _worker_checked = True


def flush_at_exit(handle: object, flush: Callable[[], None] | None) -> None:
    """Run ``flush`` at interpreter exit, before the in-process worker stops (``None``:
    forget ``handle``'s). Motion's ``flush_on_exit`` handles register here."""
    if flush is None:
        _exit_flushes.pop(id(handle), None)
        return
    _exit_flushes[id(handle)] = flush
    _arm_exit()


def _arm_exit(worker: bool = False) -> None:
    """Have :func:`_at_exit` run at interpreter exit before the hooks registered so far
    (atexit runs the last registered first: the embedded server's stop).

    With the in-process worker it must run earlier still: at exit Python first
    joins the thread pools (``threading._register_atexit``, as ``concurrent.futures``
    does), which would let a drain apply its whole inbox; so it is registered there
    too, after the worker's pool (the last registered runs first).
    """
    atexit.unregister(_at_exit)
    atexit.register(_at_exit)
    if worker:
        with contextlib.suppress(AttributeError, RuntimeError):  # RuntimeError: exiting
            threading._register_atexit(_at_exit)  # type: ignore[attr-defined]  # stdlib's


def _at_exit() -> None:
    """Exit: flush the ``flush_on_exit`` handles, then stop the in-process worker (its
    drain finishes the update under way; the rest stays durable in Redis)."""
    global _exited
    if _exited:
        return
    _exited = True
    for flush in list(_exit_flushes.values()):
        try:
            flush()
        except Exception as exc:  # at exit there is no caller left to raise to
            log.error("flush_on_exit: %s", exc)
    _exit_flushes.clear()
    if _worker is not None:
        _worker[1]()  # a no-op when it never started


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
    from motion.floor.celery_app import send_wakeup

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


async def send_wakeup_async(component: str, instance_id: str, flow: str, seq: int) -> None:
    """:func:`send_wakeup_sync` off the event loop (kombu's producer is blocking)."""
    await asyncio.to_thread(send_wakeup_sync, component, instance_id, flow, seq)


def reset() -> None:
    """Forget whether the worker was checked (tests)."""
    global _worker_checked, _exited
    _worker_checked = False
    _exited = False
