"""Motion's dev mode (``MOTION_ENV=dev``): copy-on-write instances over production state.

In dev mode a handle on instance ``x`` works on the dev instance ``DEV:x``: its own
keys (``motion:{Comp__DEV:x}:...``), its own inbox, lease, versions and
incarnation. Until the dev instance exists, reads fall back to the production
state (and version), so a developer sees production as it is. The first update
(or ``write_state``) forks it: the production state is copied, at its version, into
a new dev instance, and the update is applied there. Production is never written.
With no production instance, the dev instance is created by ``init_state``.

Because the dev namespace is part of the instance's key names and of its wake-up
(the task names instance ``DEV:x``), every worker applies a dev update to the dev
keys, whatever its own ``MOTION_ENV``. At interpreter exit the process deletes the
dev instances it used (Motion deleted every dev key in Redis, another developer's
included). Unlike Motion, the dev version is never discarded: each dev commit is
checked against the dev instance's own version, not production's.

Caller road; uses the definition layer (component), the floor (connection, drive, keys,
props, store).
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
from typing import TYPE_CHECKING, Any

import redis

from motion.floor import drive, indexes, store
from motion.floor import keys as K
from motion.floor.connection import client_for, queue_delete, redis_url
from motion.floor.drive import Steps

if TYPE_CHECKING:
    from motion.define.component import Component
    from motion.floor.props import State

Loaded = tuple[bytes, "State", Any]  # (version tag, state, cached serve entry or None)

log = logging.getLogger("motion.dev")

_lock = threading.Lock()
_used: dict[str, str] = {}  # dev instance name -> its Redis URL (deleted at exit)
_registered_pid = 0


def track(name: str) -> None:
    """Remember that this process uses the dev instance ``name``; its keys are deleted
    when the interpreter exits."""
    global _registered_pid
    url = redis_url(name)  # the Redis it lives on now (not whatever is configured at exit)
    with _lock:
        _used[name] = url
        if _registered_pid != os.getpid():  # first dev handle of this process (or child)
            _registered_pid = os.getpid()
            atexit.register(cleanup)


def cleanup() -> int:
    """Delete every dev instance this process used (its state, inbox, lease, cached
    results...); returns how many existed. Runs at exit; safe to call earlier."""
    with _lock:
        used = sorted(_used.items())
        _used.clear()
    deleted = 0
    for name, url in used:
        try:
            deleted += delete(client_for(url), name)
        except redis.RedisError as exc:  # at exit: say so, never raise
            log.warning("could not delete dev instance %s: %s", name, exc)
    return deleted


def delete(client: redis.Redis, name: str) -> int:
    """Delete every key of instance ``name``; 1 if it existed."""
    keys = K.InstanceKeys.of(name)
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in keys.prefix)
    extra = [k for k in client.scan_iter(match=escaped + "*", count=1000)]
    pipe = client.pipeline(transaction=False)
    queue_delete(pipe, keys.all())
    for start in range(0, len(extra), 500):
        queue_delete(pipe, extra[start : start + 500])
    indexes.forget(pipe, name, K.PENDING, K.SWEEP, K.HELD, K.TIMERS)
    component, instance_id = K.split_instance_name(name)
    pipe.zrem(K.names(component, name), instance_id)
    existed = int(pipe.execute()[0] > 0)
    store.STATE_CACHE.drop(name)
    return existed


def _production_keys(component: Component, production_id: str) -> list[str]:
    ikeys = K.InstanceKeys.of(K.instance_name(component.name, production_id))
    return [ikeys.meta, ikeys.state]


def read_production(component: Component, production_id: str) -> Steps[Loaded | None]:
    """The production state a dev handle falls back to (``None`` if there is none)."""
    name = K.instance_name(component.name, production_id)
    known = store.STATE_CACHE.version_of(name)
    for _ in range(3):
        keys = _production_keys(component, production_id)
        reply = yield drive.script("read", keys, [known])
        try:
            return store.parse_read(component, production_id, reply)
        except store.StaleCopy:
            known = b""
    return None


def fork_source(
    component: Component, production_id: str
) -> Steps[tuple[dict[str, Any], int] | None]:
    """``(state, version)`` of production to start a dev instance from, or ``None``."""
    loaded = yield from read_production(component, production_id)
    if loaded is None:
        return None
    return dict(loaded[1]), store.version_number(loaded[0])
