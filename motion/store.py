"""State in Redis: encoding, the version-validated local copy, reads and creation.

A serve reads the state through :class:`StateCache`: the read script returns only
the version when the local copy is current (one small round trip, however large
the state), and the whole hash when it is not. Creating an instance runs
``init_state`` in the caller and stores the result with a script that creates it
only once, however many callers race.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import TYPE_CHECKING, Any

from motion import keys as K
from motion.errors import DefinitionError, SerializationError, UpdateResultError
from motion.props import State
from motion.serde import dump_stored, load_stored
from motion.settings import get_settings

if TYPE_CHECKING:
    from motion.component import Component

#: the single field that holds the whole state when save_state/load_state are defined
SAVED_FIELD = b"\x00saved"


def now_ms() -> int:
    """Wall-clock milliseconds (shared by callers and workers; scores and ages)."""
    return int(time.time() * 1000)


def encode_changes(component: Component, name: str, changes: dict[str, Any]) -> list[Any]:
    """``[field, value, ...]`` for the changed keys (or the whole saved state with hooks)."""
    limit = get_settings().max_value_bytes
    if component.save_state_func is not None:
        saved = component.save_state_func(changes)
        return [
            SAVED_FIELD,
            dump_stored(component.serializer, f"saved state of {name}", saved, limit),
        ]
    flat: list[Any] = []
    for key, value in changes.items():
        if not isinstance(key, str):
            raise UpdateResultError(f"state keys must be strings; got {key!r} for {name}.")
        flat += [
            key,
            dump_stored(component.serializer, f"state key {key!r} of {name}", value, limit),
        ]
    return flat


def decode_state(component: Component, instance_id: str, flat: list[bytes]) -> State:
    """Turn ``HGETALL`` output into a :class:`State`, applying ``load_state``."""
    name = K.instance_name(component.name, instance_id)
    raw = dict(zip(flat[::2], flat[1::2], strict=True))
    if SAVED_FIELD in raw:
        saved = load_stored(component.serializer, f"saved state of {name}", raw[SAVED_FIELD])
        loaded = component.load_state_func(saved) if component.load_state_func else saved
        if not isinstance(loaded, dict):
            raise SerializationError(f"load_state of {component.name} must return a dict.")
        return State(instance_id, loaded)
    data = {
        f.decode(): load_stored(component.serializer, f"state key {f.decode()!r} of {name}", v)
        for f, v in raw.items()
    }
    return State(instance_id, data)


def initial_state(component: Component, init_state_params: dict[str, Any]) -> dict[str, Any]:
    """Run ``init_state(**init_state_params)`` and check it returned a dict."""
    if component.init_state_func is None:
        if init_state_params:
            raise DefinitionError(
                f"{component.name} got init_state_params but defines no @init_state."
            )
        return {}
    state = component.init_state_func(**init_state_params)
    if not isinstance(state, dict):
        raise DefinitionError(
            f"init_state of {component.name} must return a dict, got {type(state).__name__}."
        )
    return state


def init_args(component: Component, instance_id: str, state: dict[str, Any]) -> list[Any]:
    """Arguments of the init script for ``state``."""
    name = K.instance_name(component.name, instance_id)
    return [component.name, now_ms(), *encode_changes(component, name, state)]


class StateCache:
    """Process-local copies of recently read states, keyed by instance, with their version.

    Bounded (least recently used out); thread-safe. A copy is only ever returned
    after Redis confirmed its version is current.
    """

    def __init__(self, size: int = 4096) -> None:
        self._size = size
        self._data: OrderedDict[str, tuple[bytes, State]] = OrderedDict()
        self._lock = threading.Lock()
        self._churning: set[str] = set()

    def churning(self, name: str) -> bool:
        """True when the last version check of ``name`` found a newer version.

        A reader then skips the cheap version check and reads in full at once: the
        state changes between reads, so the check would cost a wasted round trip.
        """
        return name in self._churning

    def observe(self, name: str, changed: bool) -> None:
        """Record whether the version changed since the last read of ``name``."""
        if changed:
            self._churning.add(name)
        else:
            self._churning.discard(name)

    def version_of(self, name: str) -> bytes:
        """The version held for ``name``, or ``b""``."""
        entry = self._data.get(name)
        return entry[0] if entry else b""

    def get(self, name: str) -> State | None:
        """The copy held for ``name`` (callers check its version first)."""
        with self._lock:
            entry = self._data.get(name)
            if entry is None:
                return None
            self._data.move_to_end(name)
            return entry[1]

    def put(self, name: str, version: bytes, state: State) -> None:
        """Remember ``state`` at ``version``."""
        with self._lock:
            self._data[name] = (version, state)
            self._data.move_to_end(name)
            while len(self._data) > self._size:
                evicted, _ = self._data.popitem(last=False)
                self._churning.discard(evicted)  # bounded with the copies

    def clear(self) -> None:
        """Forget every copy."""
        with self._lock:
            self._data.clear()
            self._churning.clear()

    def drop(self, name: str) -> None:
        """Forget ``name`` (after it was cleared)."""
        with self._lock:
            self._data.pop(name, None)
            self._churning.discard(name)


#: the one cache of the process, shared by handles and the in-process worker
STATE_CACHE = StateCache()


def parse_read(
    component: Component, instance_id: str, reply: list[Any]
) -> tuple[int, State, Any] | None:
    """Interpret the read script's reply: ``(version, state, cached serve result or None)``.

    ``None`` when the instance does not exist.
    """
    if not reply:
        return None
    name = K.instance_name(component.name, instance_id)
    version = reply[0]
    if reply[1] == 1:
        cached = STATE_CACHE.get(name)
        if cached is None:  # evicted since we sent our version: read again in full
            raise StaleCopy(name)
        STATE_CACHE.observe(name, changed=False)
        return int(version), cached, reply[2] if len(reply) > 2 else None
    state = decode_state(component, instance_id, reply[2:])
    STATE_CACHE.observe(name, changed=bool(STATE_CACHE.version_of(name)))
    STATE_CACHE.put(name, version, state)
    return int(version), state, None


class StaleCopy(Exception):
    """The local copy named in a read vanished before the reply came (read again)."""
