"""The Celery tasks of the worker road: ``motion.apply`` (drain) and ``motion.sweep``.

Registered on the app by :func:`register`, which ``workers/`` and the in-process
worker call; callers never import this module (they send by task name).
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

from motion import celery_app, engine, heartbeat, sweeper, updates
from motion.component import lookup, registered
from motion.connection import get_redis
from motion.errors import DrainFailedError
from motion.wakeup import APPLY_TASK, SWEEP_TASK

log = logging.getLogger("motion.tasks")

#: a traceback's frame line: file, line, function
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')

_timer: sweeper.SweeperTimer | None = None
_heartbeat: heartbeat.Heartbeat | None = None


def apply(component: Any, instance_id: Any, flow: Any = None, seq: Any = None) -> dict[str, Any]:
    """Drain the instance's inbox. ``flow`` and ``seq`` only label the task in Flower.

    Raises :class:`DrainFailedError` (after everything was committed) when the drain
    recorded failed updates, so Flower shows the task as failed, with the failures.
    """
    if not isinstance(component, str) or not isinstance(instance_id, str) or not instance_id:
        raise TypeError(
            f"motion.apply takes (component: str, instance_id: str, flow, seq); got "
            f"({component!r}, {instance_id!r}, {flow!r}, {seq!r})"
        )
    comp = lookup(component)  # UnknownComponentError: visible in Flower; the inbox keeps it
    report = engine.drain(comp, instance_id)
    if report.failed:
        raise DrainFailedError(failure_summary(report))
    return report.as_dict()


def failure_summary(report: engine.DrainReport) -> str:
    """What a failed drain's task error says: counts, then each failure and where it was."""
    lines = [
        f"{report.instance}: {report.failed} update(s) failed and were recorded as failed "
        f"(not retried); {report.applied} applied (seqs {report.seqs})"
    ]
    for raw in report.failures:
        record = json.loads(raw)
        frames = _FRAME.findall(record.get("traceback", ""))
        where = (
            f" at {Path(frames[-1][0]).name}:{frames[-1][1]} in {frames[-1][2]}" if frames else ""
        )
        lines.append(
            f"#{record['seq']} (flow {record['flow']}, op {record['op']}) "
            f"{record['error_type']}: {record['message']}{where}"
        )
    if report.failed > len(report.failures):
        lines.append(f"and {report.failed - len(report.failures)} more (see motion status)")
    return "; ".join(lines)


def sweep() -> int:
    """One sweeper pass (for Celery beat); returns the number of wake-ups re-sent."""
    return sweeper.sweep_once(get_redis(), celery_app.send_wakeup)


def can_apply(component: str, flow: str, ops: list[str]) -> bool:
    """Whether this process has the code for an update of ``component``'s ``flow``
    naming ``ops`` (the held instances it may take: :func:`motion.holds.nudge`)."""
    try:
        comp = lookup(component)
    except KeyError:
        return False
    return updates.can_apply(comp, flow, ops)


def start_sweeper_timer() -> None:
    """Run the sweeper on a timer in this process (a worker's main process)."""
    global _timer
    if _timer is None:
        _timer = sweeper.SweeperTimer(celery_app.send_wakeup, can_apply)
        _timer.start()


def stop_sweeper_timer() -> None:
    """Stop the timer started by :func:`start_sweeper_timer`."""
    global _timer
    if _timer is not None:
        _timer.stop()
        _timer = None


def start_heartbeat() -> None:
    """Announce this worker process for the components it defines (see :mod:`motion.heartbeat`)."""
    global _heartbeat
    if _heartbeat is None:
        _heartbeat = heartbeat.Heartbeat(get_redis, registered)
        _heartbeat.start()


def stop_heartbeat() -> None:
    """Stop announcing this worker (it no longer counts as able to apply updates)."""
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None


def register(app: Any) -> Any:
    """Register motion's tasks on ``app``; a ready worker starts the sweeper timer and
    its heartbeat."""
    if APPLY_TASK not in app.tasks:
        # throws: an expected error, logged without Celery's traceback of this module
        app.task(name=APPLY_TASK, ignore_result=True, throws=(DrainFailedError,))(apply)
        app.task(name=SWEEP_TASK, ignore_result=True)(sweep)
        celery_app.consume_component_queues(app)
        celery_app.on_worker_ready(start_sweeper_timer)
        celery_app.on_worker_ready(start_heartbeat)
        celery_app.on_worker_shutdown(stop_sweeper_timer)
        celery_app.on_worker_shutdown(stop_heartbeat)
        updates.terminating = celery_app.terminating
    return app
