"""What a caller process needs at run time besides Redis: wake-ups and the in-process worker.

The in-process worker (a Celery worker on threads inside this process) starts on
first need when ``MOTION_INPROCESS_WORKER=1``, or by default when motion runs on
its embedded server, so a script or notebook needs no separate worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Coroutine
from typing import Any

from motion import wakeup
from motion.connection import is_embedded
from motion.errors import ConfigurationError
from motion.settings import get_settings

log = logging.getLogger("motion")

_worker_checked = False
_worker_lock = threading.Lock()


def inprocess_worker_wanted() -> bool:
    """Whether this process should run the in-process worker."""
    settings = get_settings()
    wanted = settings.inprocess_worker
    if wanted and settings.redis_shards:
        raise ConfigurationError(
            "MOTION_INPROCESS_WORKER=1 cannot serve MOTION_REDIS_SHARDS: run workers per "
            "shard (MOTION_REDIS_URL=<shard> celery -A workers worker -I <module>)."
        )
    return is_embedded() if wanted is None else wanted


def ensure_worker() -> None:
    """Start the in-process worker if this process should run one (cheap after the first call)."""
    global _worker_checked
    if _worker_checked:
        return
    with _worker_lock:
        if not _worker_checked:
            if inprocess_worker_wanted():
                from motion.worker import start_inprocess_worker  # hosts the worker road

                start_inprocess_worker()
            _worker_checked = True


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
    from motion.celery_app import send_wakeup

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
    global _worker_checked
    _worker_checked = False
