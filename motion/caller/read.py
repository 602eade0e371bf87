"""Reading an instance's committed state from the caller, and creating the instance.

The process keeps a copy of recently read states (:data:`motion.store.STATE_CACHE`);
a read costs one small round trip that confirms the copy's version tag (an
``HGET``, like a ``GET``), or none at all when client tracking vouches for it, and
the whole state only when it changed.

Constructing a handle creates the instance (:meth:`Reader.ensure`), as Motion did,
unless this process already holds a copy of it (then it costs no round trip). The
creating caller claims the creation (a short-lived claim key), runs the
component's ``init_state`` and stores the result with a new incarnation id: one
caller runs ``init_state``, however many race; the others wait for the result.
The creator keeps the live object ``init_state`` returned as its copy of version
1 (a connection made there survives). If the instance vanishes later (cleared
by another process, or lost by Redis), the next read or enqueue creates it again,
as a new incarnation.

In dev mode (:mod:`motion.devmode`) the reader of a dev instance falls back to the
production state while the dev instance does not exist, and creating the dev
instance copies the production state (at its version) instead of running
``init_state``, unless there is no production instance.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any

from motion.caller import devmode
from motion.caller.tracking import get_tracker
from motion.floor import cache, scripts, store
from motion.floor import keys as K
from motion.floor.connection import (
    fast_command,
    get_async_redis,
    get_redis,
    redis_url,
    translate_errors,
)
from motion.floor.errors import InvalidInstanceIdError
from motion.floor.props import State
from motion.floor.settings import get_settings

if TYPE_CHECKING:
    from motion.define.component import Component

Loaded = tuple[bytes, State, Any]  # (version tag, state, cached serve entry or None)

#: how long a creation claim holds (ms): past it, a waiting caller creates instead
CLAIM_MS = 30_000
_MAX_DELAY = 0.05


class Reader:
    """Reads one instance's state (and serve-cache entries) for a handle."""

    def __init__(
        self,
        component: Component,
        instance_id: str,
        init_params: dict[str, Any],
        production: str | None = None,
        *,
        timeout: float | None = None,
    ) -> None:
        self._component = component
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._id = instance_id
        self._init_params = init_params
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))
        #: dev mode: the production instance this dev instance copies on write
        self._production = production

    def ensure(self) -> None:
        """Create the instance unless this process already knows it exists (no round
        trip then); an ``init_state`` error is raised here."""
        name = self._keys.name
        if store.STATE_CACHE.version_of(name):
            return
        if self._production is not None:  # a dev copy: it exists once production does
            self.load()
            return
        with translate_errors(f"creating {name}", name):
            # one round trip reads the state, or claims the creation when there is none
            if self.create(get_redis(name)) is not None:
                return
        self.load()

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
                    return known, state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                try:
                    reply = scripts.run(client, "read", keys, args)
                    loaded = store.parse_read(self._component, self._id, reply)
                except store.StaleCopy:
                    continue
                if loaded is None and self._production is not None:
                    loaded = devmode.read_production(client, self._component, self._production)
                if loaded is None:
                    loaded = self.create(client)
                if loaded is not None:
                    return loaded
        raise InvalidInstanceIdError(f"{name} vanished while being created; try again.")

    async def aload(self, flow: str = "", digest: cache.Canonical | None = None) -> Loaded:
        """Async :meth:`load` (never blocks the event loop; ``init_state`` in a thread)."""
        name = self._keys.name
        with translate_errors(f"reading {name}", name):
            client = get_async_redis(name, self._timeout)
            known = store.STATE_CACHE.version_of(name)
            if known and digest is None and not store.STATE_CACHE.churning(name):
                state = store.STATE_CACHE.get(name)
                if state is not None and await client.hget(self._keys.meta, "tag") == known:
                    return known, state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                try:
                    reply = await scripts.arun(client, "read", keys, args)
                    loaded = store.parse_read(self._component, self._id, reply)
                except store.StaleCopy:
                    continue
                if loaded is None and self._production is not None:
                    component, production = self._component, self._production
                    loaded = await devmode.aread_production(client, component, production)
                if loaded is None:
                    loaded = await self.acreate(client)
                if loaded is not None:
                    return loaded
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

    def create(self, client: Any) -> Loaded | None:
        """Create the instance with ``init_state`` (once, however many callers race).

        Returns the live state when this call created it, the state read when another
        caller did, or ``None`` (read again)."""
        token = store.nonce()
        delay = 0.001
        while True:  # until we hold the claim, or the instance exists
            reply = scripts.run(client, "read", self._claim_keys(), ["", token, CLAIM_MS])
            if not reply:
                break
            if reply[0] != 0:
                return store.parse_read(self._component, self._id, reply)
            time.sleep(delay)  # another caller runs init_state (its claim expires)
            delay = min(2 * delay, _MAX_DELAY)
        try:
            forked = None
            if self._production is not None:  # dev: copy production, at its version
                forked = devmode.fork_source(client, self._component, self._production)
            state, version = forked or (store.initial_state(self._component, self._init_params), 1)
            incarnation = store.new_incarnation()
            init = store.init_args(self._component, self._id, state, incarnation, version)
        except BaseException:
            client.delete(self._keys.claim)  # let the next caller try at once
            raise
        return self._created(scripts.run(client, "init", self._init_keys(), init), state)

    async def acreate(self, client: Any) -> Loaded | None:
        """Async :meth:`create` (``init_state`` runs in a thread)."""
        token = store.nonce()
        delay = 0.001
        while True:
            reply = await scripts.arun(client, "read", self._claim_keys(), ["", token, CLAIM_MS])
            if not reply:
                break
            if reply[0] != 0:
                return store.parse_read(self._component, self._id, reply)
            await asyncio.sleep(delay)
            delay = min(2 * delay, _MAX_DELAY)
        try:
            forked = None
            if self._production is not None:
                forked = await devmode.afork_source(client, self._component, self._production)
            if forked is None:
                initial = self._component, self._init_params
                forked = await asyncio.to_thread(store.initial_state, *initial), 1
            state, version = forked
            incarnation = store.new_incarnation()
            init = store.init_args(self._component, self._id, state, incarnation, version)
        except BaseException:
            await client.delete(self._keys.claim)
            raise
        return self._created(await scripts.arun(client, "init", self._init_keys(), init), state)

    def _created(self, reply: list[Any], state: dict[str, Any]) -> Loaded | None:
        """After the init script: keep the live ``init_state`` result as the copy of
        version 1 when this call created the instance."""
        if reply[0] != 1:
            return None  # it existed after all: read it
        live = State(K.public_id(self._id), state)
        store.STATE_CACHE.put(self._keys.name, reply[1], live)
        store.STATE_CACHE.observe(self._keys.name, changed=False)
        return reply[1], live, None

    def _read_call(self, flow: str, digest: cache.Canonical | None) -> tuple[list[str], list[Any]]:
        known = store.STATE_CACHE.version_of(self._keys.name)
        keys = [self._keys.meta, self._keys.state]
        if known and digest:
            hash_key, entry = cache.key(self._keys, flow, digest.digest, known)
            return [*keys, hash_key], [known, entry]
        return keys, [known]

    def _version_is(self, client: Any, known: bytes) -> bool:
        if not get_settings().client_tracking:
            return bool(fast_command(client, "HGET", self._keys.meta, "tag") == known)
        name = self._keys.name
        tracker = get_tracker(redis_url(name))
        if tracker.trusted(name):
            return True
        tracked = tracker.client() or client
        token = tracker.begin(name)
        if tracked.hget(self._keys.meta, "tag") != known:
            return False
        tracker.confirm(name, token)
        return True

    def _init_keys(self) -> list[str]:
        return [self._keys.meta, self._keys.state, K.COMPONENTS, self._keys.claim]

    def _claim_keys(self) -> list[str]:
        return [self._keys.meta, self._keys.state, self._keys.claim]
