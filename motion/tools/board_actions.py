"""What the dashboard does to an instance through its handle: dead letters retried or
dropped, flows paused and resumed, and its history read (past versions' states).

These need the component's code in the dashboard's process (``motion dashboard -I
my_components``): the handle's own methods do the work (``retry``, ``drop``,
``pause``, ``resume``, ``history``, ``read_state(key, version=)``), so the dashboard
keeps every rule they keep (ordering, incarnations, the flow-control holds).
Without the code, or with a release whose handle lacks a method, each says so in a
:class:`NotAvailable` the page shows.

Tool; uses the definition layer (component) and the floor (errors, keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from motion.define.component import lookup, registered
from motion.floor import keys as K
from motion.floor.errors import MotionError

#: versions of the history the instance page lists
HISTORY_ROWS = 20
_ABSENT = object()


class NotAvailable(MotionError):
    """The dashboard cannot do this here (no component code imported, or no such method)."""


def handle(component: str, instance_id: str) -> Any:
    """A handle on the existing instance ``component__instance_id`` (never creates one)."""
    if component not in registered():
        raise NotAvailable(
            f"the dashboard has no code for {component}: start it with "
            f"`motion dashboard -I <module defining {component}>` to retry, drop, pause, "
            f"resume or read history."
        )
    from motion.tools.browse import summary

    summary(K.instance_name(component, instance_id))  # InstanceNotFoundError if missing
    return lookup(component)(instance_id)


def _method(target: Any, name: str) -> Any:
    found = getattr(target, name, None)
    if found is None:
        raise NotAvailable(f"this motion release has no {name}() on instance handles")
    return found


def retry(component: str, instance_id: str, seq: int) -> str:
    """Retry dead letter ``seq``; returns what happened, in words."""
    result = _method(handle(component, instance_id), "retry")(seq)
    new_seq = getattr(result, "seq", None)
    if new_seq is not None and new_seq != seq:
        return f"update #{seq} retried as update #{new_seq}"
    return f"update #{seq} retried"


def drop(component: str, instance_id: str, seq: int) -> str:
    """Drop dead letter ``seq`` (its flow goes on if it was paused on it)."""
    _method(handle(component, instance_id), "drop")(seq)
    return f"update #{seq} dropped"


def pause(component: str, instance_id: str, flow: str | None) -> str:
    """Pause ``flow`` (``None``: the whole instance); updates queue up meanwhile."""
    done = _method(handle(component, instance_id), "pause")(flow=flow)
    what = f"flow {flow!r}" if flow else "every flow"
    return f"{what} paused" if done is not False else f"{what} was held already"


def resume(component: str, instance_id: str, flow: str | None) -> str:
    """Resume ``flow`` (``None``: the whole instance) and wake a worker."""
    done = _method(handle(component, instance_id), "resume")(flow=flow)
    what = f"flow {flow!r}" if flow else "every flow"
    return f"{what} resumed" if done is not False else f"{what} was not paused"


@dataclass
class Version:
    """One version of an instance's history, as the page lists it."""

    version: int
    seqs: list[int] = field(default_factory=list)
    flows: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    at: datetime | None = None


def history(component: str, instance_id: str, limit: int = HISTORY_ROWS) -> list[Version]:
    """The newest ``limit`` versions kept in the instance's history, newest first."""
    records = _method(handle(component, instance_id), "history")(limit=limit)
    return [
        Version(
            int(r.version),
            [int(s) for s in getattr(r, "seqs", ())],
            [str(f) for f in getattr(r, "flows", ())],
            [str(k) for k in getattr(r, "changed", ())],
            getattr(r, "at", None),
        )
        for r in records
    ]


def state_at(component: str, instance_id: str, version: int, keys: list[str]) -> dict[str, Any]:
    """The values of ``keys`` as of ``version`` (a key absent then is left out)."""
    read = _method(handle(component, instance_id), "read_state")
    out = {}
    for key in keys:
        value = read(key, _ABSENT, version=version)
        if value is not _ABSENT:
            out[key] = value
    return out
