"""A handle's view of its instance's past: its kept versions and their values.

:class:`PastMixin` gives :class:`motion.caller.handle.Instance` :meth:`~PastMixin.history`
and the ``version=`` of ``read_state``; the records and how a version is rebuilt are in
:mod:`motion.floor.history`. Caller road; uses the floor (connection, history, store).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motion.floor import history as H
from motion.floor import keys as K
from motion.floor import store
from motion.floor.connection import get_redis, translate_errors

if TYPE_CHECKING:
    from motion.define.component import Component


class PastMixin:
    """History reads of a handle (needs its ``_component``, ``_keys`` and ``_timeout``)."""

    _component: Component
    _keys: K.InstanceKeys
    _timeout: Any

    def history(self, limit: int | None = None) -> list[H.HistoryRecord]:
        """The kept versions of this instance, newest first (at most ``limit``): each a
        :class:`motion.floor.history.HistoryRecord` with ``.version``, ``.seqs``,
        ``.flows``, ``.changed``, ``.at`` (a UTC datetime) and ``.values()`` (the
        changed keys' values as of that version). ``Component(history=K)`` keeps K."""
        if limit is not None and (not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive whole number or None, got {limit!r}.")
        name = self._keys.name
        with translate_errors(f"reading the history of {name}", name):
            client = get_redis(name, self._timeout)
            return H.read_history(client, name, limit, self._component.serializer)

    def _read_past(self, key: str, default_value: Any, version: int) -> Any:
        """The value of ``key`` as of ``version`` (see :func:`motion.floor.history.state_at`)."""
        name = self._keys.name
        with translate_errors(f"reading version {version} of {name}", name):
            inc, flat = H.state_at(get_redis(name, self._timeout), name, version)
        stored_id = K.split_instance_name(name)[1]
        state = store.decode_state(self._component, stored_id, flat, inc)
        return state.get(key, default_value)
