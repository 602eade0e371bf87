"""What the dashboard does to an instance: dead letters retried or dropped, flows paused
and resumed, and its history read (a past version's state).

Each goes through the library function the CLI uses too, by instance name, so no
component code is needed in the dashboard's process (``-I`` only picks the serializer
that decodes payloads and values): :func:`motion.caller.letters.retry_stored` (in
place when the flow is paused on the dead letter, else re-enqueued with a new seq),
:func:`motion.caller.letters.drop_letter`, :func:`motion.caller.control.hold`,
:func:`motion.tools.past.instance_history` and :func:`motion.tools.past.state_as_of`.
Every rule they keep (ordering, incarnations, flow-control holds) holds here too.

Tool; uses the caller road (control, letters), tools (past) and the floor (inbox, keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from motion.caller import control, letters
from motion.floor import keys as K
from motion.floor.inbox import check_flow_name
from motion.tools import past

#: versions of the history the instance page lists
HISTORY_ROWS = 20


def _keys(component: str, instance_id: str) -> K.InstanceKeys:
    return K.InstanceKeys.of(K.instance_name(component, instance_id))


def retry(component: str, instance_id: str, seq: int) -> str:
    """Retry dead letter ``seq``; returns what happened, in words."""
    ticket = letters.retry_stored(_keys(component, instance_id), seq)
    if ticket.seq == seq:
        return f"update #{seq} retried in place"
    return f"update #{seq} retried as update #{ticket.seq}"


def drop(component: str, instance_id: str, seq: int) -> str:
    """Drop dead letter ``seq`` (its flow goes on if it was paused on it)."""
    letters.drop_letter(_keys(component, instance_id), seq)
    return f"update #{seq} dropped"


def _hold(component: str, instance_id: str, flow: str | None, pause: bool) -> str:
    what = "every flow" if flow is None else f"flow {check_flow_name(flow)!r}"
    keys = _keys(component, instance_id)
    if control.hold(keys, pause, flow):
        return f"{what} {'paused' if pause else 'resumed'}"
    return f"{what} was {'held' if pause else 'not paused'} already"


def pause(component: str, instance_id: str, flow: str | None) -> str:
    """Pause ``flow`` (``None``: the whole instance); updates queue up meanwhile."""
    return _hold(component, instance_id, flow, True)


def resume(component: str, instance_id: str, flow: str | None) -> str:
    """Resume ``flow`` (``None``: the whole instance); its held updates go on in order."""
    return _hold(component, instance_id, flow, False)


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
    records = past.instance_history(K.instance_name(component, instance_id), limit)
    return [Version(r.version, list(r.seqs), list(r.flows), list(r.changed), r.at) for r in records]


def state_at(component: str, instance_id: str, version: int) -> dict[str, Any]:
    """The stored state as of kept ``version`` (VersionNotKeptError if not kept)."""
    return past.state_as_of(K.instance_name(component, instance_id), version)
