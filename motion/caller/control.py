"""Holding an instance's updates: ``handle.pause`` / ``handle.resume``, and retrying in
place the update a flow stopped at (``on_failure="pause"``).

A pause is the meta field ``hold:<flow>`` (``hold:*`` for the whole instance): the
drain parks the flow's updates instead of applying them, and later updates of other
flows go on (see :mod:`motion.floor.parked`). Enqueues are still accepted, up to
``MOTION_MAX_PENDING`` updates in the instance's inbox while a hold lasts; beyond,
an enqueue raises :class:`~motion.errors.TooManyPendingError`. ``resume`` (and a retry
or a drop) gives the released flow a timer due at once, which a worker's firer turns
into a wake-up (:mod:`motion.worker.firer`): nothing for the caller to send or lose.

:class:`FlowControl` is a mixin of :class:`motion.caller.handle.Instance`.

Caller road; uses the floor (connection, errors, keys, parked, scripts, settings).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motion.floor import directory, scripts
from motion.floor import keys as K
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import InstanceNotFoundError
from motion.floor.settings import get_settings

if TYPE_CHECKING:
    from motion.define.component import Component


def _run(keys: K.InstanceKeys, mode: str, target: str, what: str) -> list[Any]:
    script_keys = [keys.meta, keys.parked, keys.timers, K.timers_index(keys.name)]
    script_keys += [keys.inbox, keys.failed]
    args = [mode, target, keys.name, get_settings().max_pending]
    with translate_errors(what, keys.name):
        reply: list[Any] = scripts.run(get_redis(keys.name), "control", script_keys, args)
        directory.touch(get_redis(keys.name), K.TIMERS, keys.name)  # a cluster lists a timer
    if int(reply[0]) < 0:
        raise InstanceNotFoundError(f"{keys.name} does not exist (cleared meanwhile?).")
    return reply


class FlowControl:
    """``pause`` / ``resume`` of a handle (mixed into :class:`motion.caller.handle.Instance`)."""

    _keys: K.InstanceKeys
    _component: Component

    def _control_target(self, flow: str | None) -> str:
        if flow is None:
            return "*"
        self._component.check_flow(flow)
        return flow

    def pause(self, flow: str | None = None) -> bool:
        """Hold ``flow``'s updates (``None``: every flow of this instance) until
        :meth:`resume`; enqueues are still accepted (up to ``MOTION_MAX_PENDING``).
        Updates of other flows go on. Returns whether this call paused it (``False``:
        it was held already, by a pause or at a failed update)."""
        target = self._control_target(flow)
        return int(_run(self._keys, "pause", target, f"pausing {target}")[0]) == 1

    def resume(self, flow: str | None = None) -> bool:
        """Release a pause of ``flow`` (``None``: the instance-wide pause): its held
        updates are applied in their order, within tens of ms. Returns whether it was
        paused. A flow stopped at a failed update stays so: retry or drop that update."""
        target = self._control_target(flow)
        return int(_run(self._keys, "resume", target, f"resuming {target}")[0]) == 1


def retry_in_place(handle: Any, seq: int) -> bool:
    """Re-apply update ``seq`` in place (same seq, its flow's order kept) if it is the
    update its flow is paused on (``on_failure="pause"``: the flow goes on), or a dead
    letter parked behind another (a batch that failed whole) or already being retried
    (it stays, and goes when its flow does). ``False`` otherwise (then re-enqueue it).
    ``handle`` may be the instance's :class:`~motion.floor.keys.InstanceKeys` too."""
    reply = _run(_keys_of(handle), "retry", str(int(seq)), f"retrying update #{seq}")
    return int(reply[0]) in (1, 2)


def drop_parked(handle: Any, seq: int) -> bool:
    """Drop update ``seq`` if it is parked (held by a flow-control option, or the failed
    update its flow is paused on: the flow then goes on); its payload and dead letter
    go. ``False`` if it is not parked. ``handle`` may be the instance's keys too."""
    reply = _run(_keys_of(handle), "drop", str(int(seq)), f"dropping update #{seq}")
    return int(reply[0]) == 1


def hold(keys: K.InstanceKeys, pause: bool, flow: str | None = None) -> bool:
    """``pause`` / ``resume`` by the instance's keys, without the component's code (the
    ``motion pause|resume`` commands): whether it changed anything."""
    mode, target = "pause" if pause else "resume", "*" if flow is None else flow
    return int(_run(keys, mode, target, f"{mode} of {target}")[0]) == 1


def _keys_of(handle: Any) -> K.InstanceKeys:
    return handle if isinstance(handle, K.InstanceKeys) else handle._keys
