"""State in Redis: encoding, the version-validated local copy, reads and creation.

A serve reads the state through :class:`StateCache`: the read script returns only
the version tag when the local copy is current (one small round trip, however
large the state), and the whole hash when it is not. Creating an instance runs
``init_state`` in the caller and stores the result with a script that creates it
only once, however many callers race.

Incarnations: each life of an instance (created, cleared, created again; or lost
with Redis' data) gets a random 128-bit incarnation id, and every version is seen
by caches as a *tag*, ``b"<version>.<incarnation>[.<nonce>]"`` (the commit that
makes a version adds a random nonce). Caches compare tags, never bare version
numbers, so a copy of an earlier life at "version 4" is never taken for version 4
of a later one, nor a version Redis lost for the one counted again after it.

Floor; uses the floor (errors, keys, props, serde, settings).
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from typing import Any

from motion.floor import keys as K
from motion.floor.errors import DefinitionError, SerializationError, UpdateResultError
from motion.floor.props import State
from motion.floor.serde import Definition, binding, dump_stored, load_stored
from motion.floor.settings import get_settings

#: the single field that holds the whole state when save_state/load_state are defined
SAVED_FIELD = b"\x00saved"


def now_ms() -> int:
    """Wall-clock milliseconds (shared by callers and workers; scores and ages)."""
    return int(time.time() * 1000)


def new_incarnation() -> str:
    """A fresh incarnation id: 128 random bits (32 hex digits) that never repeat."""
    return secrets.token_hex(16)


def nonce() -> str:
    """A random nonce for a lease token or a version tag."""
    return secrets.token_hex(8)


def version_number(tag: bytes | str) -> int:
    """The version number of a version tag (``b"4.<incarnation>.<nonce>"`` -> 4)."""
    raw = tag.encode() if isinstance(tag, str) else tag
    return int(raw.split(b".", 1)[0])


def incarnation_of(tag: bytes | str) -> bytes:
    """The incarnation id in a version tag."""
    raw = tag.encode() if isinstance(tag, str) else tag
    return raw.split(b".")[1]


def value_binding(name: str, field: str | bytes, incarnation: str | bytes) -> bytes:
    """Where a signed state value belongs: its instance, field and incarnation."""
    return binding(name, field, incarnation)


def encode_changes(
    component: Definition, name: str, changes: dict[str, Any], incarnation: str | bytes
) -> list[Any]:
    """``[field, value, ...]`` for the changed keys (or the whole saved state with hooks),
    signed (with a signing key) for ``name``, each field and ``incarnation``."""
    limit = get_settings().max_value_bytes
    if component.save_state_func is not None:
        saved = component.save_state_func(changes)
        bind = value_binding(name, SAVED_FIELD, incarnation)
        return [
            SAVED_FIELD,
            dump_stored(component.serializer, f"saved state of {name}", saved, limit, bind),
        ]
    flat: list[Any] = []
    for key, value in changes.items():
        if not isinstance(key, str):
            raise UpdateResultError(f"state keys must be strings; got {key!r} for {name}.")
        what = f"state key {key!r} of {name}"
        bind = value_binding(name, key, incarnation)
        flat += [key, dump_stored(component.serializer, what, value, limit, bind)]
    return flat


def decode_state(
    component: Definition, instance_id: str, flat: list[bytes], incarnation: bytes
) -> State:
    """Turn ``HGETALL`` output of ``incarnation`` into a :class:`State`, applying
    ``load_state``."""
    name = K.instance_name(component.name, instance_id)
    raw = dict(zip(flat[::2], flat[1::2], strict=True))
    if SAVED_FIELD in raw:
        bind = value_binding(name, SAVED_FIELD, incarnation)
        what = f"saved state of {name}"
        saved = load_stored(component.serializer, what, raw[SAVED_FIELD], bind)
        loaded = component.load_state_func(saved) if component.load_state_func else saved
        if not isinstance(loaded, dict):
            raise SerializationError(f"load_state of {component.name} must return a dict.")
        return State(K.public_id(instance_id), loaded)
    data = {
        f.decode(): load_stored(
            component.serializer,
            f"state key {f.decode()!r} of {name}",
            v,
            value_binding(name, f, incarnation),
        )
        for f, v in raw.items()
    }
    return State(K.public_id(instance_id), data)


def initial_state(component: Definition, init_state_params: dict[str, Any]) -> dict[str, Any]:
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


def init_args(
    component: Definition,
    instance_id: str,
    state: dict[str, Any],
    incarnation: str,
    version: int = 1,
) -> list[Any]:
    """Arguments of the init script creating ``incarnation`` with ``state`` at ``version``."""
    name = K.instance_name(component.name, instance_id)
    fields = encode_changes(component, name, state, incarnation)
    return [component.name, now_ms(), incarnation, version, *fields]


class StateCache:
    """Process-local copies of recently read states, keyed by instance, with their
    version tag (so a copy of an earlier incarnation never passes for a later one).

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
        """The version tag held for ``name``, or ``b""``."""
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
        """Remember ``state`` at version tag ``version``."""
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
    component: Definition, instance_id: str, reply: list[Any]
) -> tuple[bytes, State, Any] | None:
    """Interpret the read script's reply: ``(version tag, state, cached serve result or
    None)``.

    ``None`` when the instance does not exist.
    """
    if not reply or len(reply) < 2:
        return None
    name = K.instance_name(component.name, instance_id)
    tag = reply[0]
    if reply[1] == 1:
        cached = STATE_CACHE.get(name)
        if cached is None:  # evicted since we sent our tag: read again in full
            raise StaleCopy(name)
        STATE_CACHE.observe(name, changed=False)
        return tag, cached, reply[2] if len(reply) > 2 else None
    state = decode_state(component, instance_id, reply[2:], incarnation_of(tag))
    STATE_CACHE.observe(name, changed=bool(STATE_CACHE.version_of(name)))
    STATE_CACHE.put(name, tag, state)
    return tag, state, None


class StaleCopy(Exception):
    """The local copy named in a read vanished before the reply came (read again)."""
