"""What a caller process needs at run time besides Redis: wake-ups and the in-process worker.

The in-process worker (a Celery worker on threads inside this process) starts on
first need when ``MOTION_INPROCESS_WORKER=1``, or by default when motion runs on
its embedded server or on Motion's configuration (``MOTION_REDIS_HOST``... or
``.motionrc.yml``), so a script, a notebook or a Motion program needs no
separate worker (the rule is written once, in :mod:`motion.settings`).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from motion.floor import wakeup
from motion.floor.connection import is_embedded
from motion.floor.errors import ConfigurationError
from motion.floor.settings import get_settings

log = logging.getLogger("motion")

_worker_checked = False
_worker_lock = threading.Lock()
#: what to do at exit before the in-process worker stops: flush_on_exit handles' flushes
_exit_flushes: dict[int, Callable[[], None]] = {}


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
                from motion.worker.inprocess import start_inprocess_worker  # hosts the worker road

                start_inprocess_worker()
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


_exited = False


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
    worker = sys.modules.get("motion.worker.inprocess")  # imported only if it was started
    if worker is not None:
        worker.stop_inprocess_worker()


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


def call_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()


def reset() -> None:
    """Forget whether the worker was checked (tests)."""
    global _worker_checked, _exited
    _worker_checked = False
    _exited = False
