"""Hosting the in-process worker in a caller process, and what runs at its exit.

The in-process worker (a Celery worker on threads inside this process) starts on
first need when ``MOTION_INPROCESS_WORKER=1``, or by default when motion runs on its
embedded server or on Motion's configuration (``MOTION_REDIS_HOST``... or
``.motionrc.yml``), so a script, a notebook or a Motion program needs no separate
worker (the rule is written once, in :mod:`motion.floor.settings`). The worker is
the worker road's: :mod:`motion` hands it in with :func:`set_worker`, so this road
never imports that one. At exit, Motion's ``flush_on_exit`` handles flush first,
then the worker stops.

Caller road; uses the floor (connection, errors, settings).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import threading
from collections.abc import Callable

from motion.floor.connection import is_embedded
from motion.floor.errors import ConfigurationError
from motion.floor.settings import get_settings

log = logging.getLogger("motion")

_worker: tuple[Callable[[], None], Callable[[], None]] | None = None
_worker_checked = False
_worker_lock = threading.Lock()
#: what to do at exit before the in-process worker stops: flush_on_exit handles' flushes
_exit_flushes: dict[int, Callable[[], None]] = {}
_exited = False


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
                        "to motion.caller.host.set_worker (import motion, which does)."
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


def reset() -> None:
    """Forget whether the worker was checked (tests)."""
    global _worker_checked, _exited
    _worker_checked = False
    _exited = False
