"""The Celery tasks of the worker road: ``motion.apply`` (the drain: see
:func:`motion.worker.engine.apply_task`), ``motion.ready`` (the drains of many ready
instances: :mod:`motion.worker.ready`) and ``motion.sweep``, and the timers a worker
process runs (sweeper, heartbeat).

Registered on the app by :func:`register`, which ``workers/`` and the in-process
worker call; callers never import this module (they send by task name).
"""

from __future__ import annotations

import logging
from typing import Any

from motion.define.component import lookup, registered
from motion.define.definitions import check_unique
from motion.floor import awaits, celery_app, heartbeat
from motion.floor.connection import get_redis
from motion.floor.errors import DrainFailedError
from motion.floor.settings import get_settings
from motion.floor.wakeup import APPLY_TASK, READY_TASK, SWEEP_TASK
from motion.worker import engine, firer, ready, sweeper

log = logging.getLogger("motion.tasks")

_timer: sweeper.SweeperTimer | None = None
_firer: firer.Firer | None = None
_heartbeat: heartbeat.Heartbeat | None = None


def sweep() -> int:
    """One sweeper pass (for Celery beat); returns the number of wake-ups re-sent."""
    return sweeper.sweep_once(get_redis(), celery_app.send_wakeup)


def can_apply(component: str, flow: str, ops: list[str]) -> bool:
    """Whether this process has the code for an update of ``component``'s ``flow``
    naming ``ops`` (the held instances it may take: :func:`motion.worker.holds.nudge`)."""
    try:
        comp = lookup(component)
    except KeyError:
        return False
    return comp.can_apply(flow, ops)


def start_sweeper_timer() -> None:
    """Run the sweeper on a timer in this process (a worker's main process), and the
    firer (:mod:`motion.worker.firer`) beside it."""
    global _timer, _firer
    if _timer is None:
        _timer = sweeper.SweeperTimer(celery_app.send_wakeup, can_apply)
        _timer.start()
    if _firer is None:
        _firer = firer.Firer(celery_app.send_wakeup, get_redis)
        _firer.start()


def stop_sweeper_timer() -> None:
    """Stop the timer and the firer started by :func:`start_sweeper_timer`."""
    global _timer, _firer
    if _timer is not None:
        _timer.stop()
        _timer = None
    if _firer is not None:
        _firer.stop()
        _firer = None


def _update_flows(component: str) -> list[str]:
    """The flows with update ops this worker's code has for ``component``."""
    comp = lookup(component)
    return [flow for flow in comp.flows() if comp.update_ops(flow)]


def start_heartbeat() -> None:
    """Announce this worker for the components it defines (:mod:`motion.floor.heartbeat`)."""
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = heartbeat.Heartbeat(get_redis, registered, _update_flows)
        _heartbeat.start()


def stop_heartbeat() -> None:
    """Stop announcing this worker (it no longer counts as able to apply updates)."""
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


def stop_loop() -> None:
    """Let the drains on this process's event loop finish (for up to a lease period),
    then stop them with their updates pending (:mod:`motion.floor.awaits`)."""
    engine.STOPPING.set()
    awaits.LOOP.stop(get_settings().lease_seconds)


def worker_components() -> list[str]:
    """The components this worker applies; :class:`DefinitionError` if its modules define
    one twice, differently (it could not tell which applies)."""
    check_unique()
    return registered()


def register(app: Any) -> Any:
    """Register motion's tasks on ``app``; a ready worker starts the sweeper timer and
    its heartbeat."""
    if APPLY_TASK not in app.tasks:
        # throws: an expected error, logged without Celery's traceback of this module
        app.task(name=APPLY_TASK, ignore_result=True, throws=(DrainFailedError,))(engine.apply_task)
        app.task(
            name=READY_TASK,
            ignore_result=True,
            throws=(DrainFailedError,),
            resultrepr_maxsize=ready.RESULT_REPR,  # every instance's seqs show in Flower
        )(ready.ready_task)
        app.task(name=SWEEP_TASK, ignore_result=True)(sweep)
        celery_app.on_worker_setup(ready.configure)
        celery_app.consume_component_queues(app, worker_components)
        celery_app.on_worker_ready(start_sweeper_timer)
        celery_app.on_worker_ready(start_heartbeat)
        celery_app.on_worker_shutting_down(ready.leave)
        celery_app.on_worker_shutdown(stop_sweeper_timer)
        celery_app.on_worker_shutdown(stop_heartbeat)
        celery_app.on_worker_shutdown(stop_loop)
        awaits.terminating = celery_app.terminating
    return app
