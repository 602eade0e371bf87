"""The in-process worker: a Celery worker on threads inside the caller's process.

Started on first need by :func:`motion.caller.enqueue.ensure_worker` when motion runs on
its embedded server (or ``MOTION_INPROCESS_WORKER=1``), so a script or notebook
applies its updates with no separate worker. Like any worker it consumes the
queues of the components this process defines, including components defined
after it started, so it never takes a wake-up it cannot apply.

Worker road; uses the worker road (engine, ready, tasks), the definition layer (definitions),
the floor (celery_app, settings).
"""

from __future__ import annotations

import atexit
import logging
import threading

from motion.define import definitions
from motion.floor import awaits, celery_app
from motion.floor.settings import get_settings
from motion.worker import engine, ready, tasks

log = logging.getLogger("motion.worker")

_lock = threading.Lock()
_worker: celery_app.ThreadWorker | None = None


def start_inprocess_worker() -> None:
    """Start the in-process worker and the sweeper timer (idempotent)."""
    global _worker
    with _lock:
        if _worker is not None:
            return
        tasks.register(celery_app.get_app())
        engine.STOPPING.clear()
        settings = get_settings()
        ready.configure("threads", settings.inprocess_concurrency)
        _worker = celery_app.ThreadWorker(settings.inprocess_concurrency, definitions.registered())
        definitions.on_register(_consume)
        tasks.start_sweeper_timer()
        tasks.start_heartbeat()
        atexit.register(stop_inprocess_worker)
        log.info("in-process worker started (%d threads)", settings.inprocess_concurrency)


def _consume(name: str) -> None:
    """A component was defined after the worker started: consume its queues too."""
    worker = _worker
    if worker is not None:
        worker.consume(name)


def stop_inprocess_worker() -> None:
    """Stop the in-process worker (at exit; idempotent).

    A drain under way finishes and commits the update it is applying; the rest of
    the inbox stays in Redis for the next worker of any kind.
    """
    global _worker
    with _lock:
        worker, _worker = _worker, None
    if worker is not None:
        engine.STOPPING.set()
        tasks.stop_sweeper_timer()
        tasks.stop_heartbeat()
        worker.stop(max(10.0, 2 * get_settings().lease_seconds))
        awaits.LOOP.stop(get_settings().lease_seconds)  # the drains handed to the event loop
        engine.STOPPING.clear()  # drains run by hand (admin tools, tests) go on as usual


def running() -> bool:
    """Whether this process runs the in-process worker."""
    return _worker is not None
