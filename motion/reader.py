"""Reading an instance's committed state from the caller, creating it on first use.

The process keeps a copy of recently read states (:data:`motion.store.STATE_CACHE`);
a read costs one small round trip that confirms the copy's version (an ``HGET``,
like a ``GET``), or none at all when client tracking vouches for it, and the
whole state only when it changed. The first read of a new instance runs the
component's ``init_state`` here and stores the result (created once, however
many callers race).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from motion import cache, scripts, store
from motion import keys as K
from motion.connection import (
    fast_command,
    get_async_redis,
    get_redis,
    redis_url,
    translate_errors,
)
from motion.errors import InvalidInstanceIdError
from motion.props import State
from motion.settings import get_settings
from motion.tracking import get_tracker

if TYPE_CHECKING:
    from motion.component import Component

Loaded = tuple[int, State, Any]  # (version, state, cached serve entry or None)


class Reader:
    """Reads one instance's state (and serve-cache entries) for a handle."""

    def __init__(
        self,
        component: Component,
        instance_id: str,
        init_params: dict[str, Any],
        *,
        timeout: float | None = None,
    ) -> None:
        self._component = component
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._id = instance_id
        self._init_params = init_params
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))

    def load(self, flow: str = "", digest: cache.Canonical | None = None) -> Loaded:
        """``(version, state, cache entry)``; the entry of ``(flow, digest)`` if asked."""
        name = self._keys.name
        with translate_errors(f"reading {name}", name):
            client = get_redis(name, self._timeout)
            known = store.STATE_CACHE.version_of(name)
            if known and digest is None and not store.STATE_CACHE.churning(name):
                # the common case: one HGET confirms the local copy, or none at all
                # when client tracking vouches for it
                state = store.STATE_CACHE.get(name)
                if state is not None and self._version_is(client, known):
                    return int(known), state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                try:
                    reply = scripts.run(client, "read", keys, args)
                    loaded = store.parse_read(self._component, self._id, reply)
                except store.StaleCopy:
                    continue
                if loaded is not None:
                    return loaded
                self.create(client)
        raise InvalidInstanceIdError(f"{name} vanished while being created; try again.")

    async def aload(self, flow: str = "", digest: cache.Canonical | None = None) -> Loaded:
        """Async :meth:`load` (never blocks the event loop; ``init_state`` in a thread)."""
        name = self._keys.name
        with translate_errors(f"reading {name}", name):
            client = get_async_redis(name, self._timeout)
            known = store.STATE_CACHE.version_of(name)
            if known and digest is None and not store.STATE_CACHE.churning(name):
                state = store.STATE_CACHE.get(name)
                if state is not None and await client.hget(self._keys.meta, "version") == known:
                    return int(known), state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                try:
                    reply = await scripts.arun(client, "read", keys, args)
                    loaded = store.parse_read(self._component, self._id, reply)
                except store.StaleCopy:
                    continue
                if loaded is not None:
                    return loaded
                initial = await asyncio.to_thread(
                    store.initial_state, self._component, self._init_params
                )
                init = store.init_args(self._component, self._id, initial)
                await scripts.arun(client, "init", self._init_keys(), init)
        raise InvalidInstanceIdError(f"{name} vanished while being created; try again.")

    def local_copy(self) -> tuple[bytes, State | None]:
        """The process's copy of the state and its version (not checked against Redis)."""
        name = self._keys.name
        version = store.STATE_CACHE.version_of(name)
        return version, store.STATE_CACHE.get(name) if version else None

    def steady(self) -> bool:
        """Whether a local copy exists and the state did not change at the last check."""
        name = self._keys.name
        return bool(store.STATE_CACHE.version_of(name)) and not store.STATE_CACHE.churning(name)

    def remember(self, reply: list[Any]) -> None:
        """Keep the state an enqueue refused to serve on (``{-1, version, f, v...}``)."""
        store.parse_read(self._component, self._id, [reply[1], 0, *reply[2:]])

    def create(self, client: Any) -> None:
        """Create the instance with ``init_state`` (a no-op if it exists)."""
        state = store.initial_state(self._component, self._init_params)
        init = store.init_args(self._component, self._id, state)
        scripts.run(client, "init", self._init_keys(), init)

    def _read_call(self, flow: str, digest: cache.Canonical | None) -> tuple[list[str], list[Any]]:
        known = store.STATE_CACHE.version_of(self._keys.name)
        keys = [self._keys.meta, self._keys.state]
        if known and digest:
            hash_key, entry = cache.key(self._keys, flow, digest.digest, known)
            return [*keys, hash_key], [known, entry]
        return keys, [known]

    def _version_is(self, client: Any, known: bytes) -> bool:
        if not get_settings().client_tracking:
            return bool(fast_command(client, "HGET", self._keys.meta, "version") == known)
        name = self._keys.name
        tracker = get_tracker(redis_url(name))
        if tracker.trusted(name):
            return True
        tracked = tracker.client() or client
        token = tracker.begin(name)
        if tracked.hget(self._keys.meta, "version") != known:
            return False
        tracker.confirm(name, token)
        return True

    def _init_keys(self) -> list[str]:
        return [self._keys.meta, self._keys.state, K.COMPONENTS]
