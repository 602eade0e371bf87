"""Serving in the caller: reading the state, and running serve ops on it.

:class:`Reader` reads one instance's committed state for its handle. The process
keeps a copy of recently read states (:data:`motion.floor.store.STATE_CACHE`); a
read costs one small round trip that confirms the copy's version tag (an ``HGET``,
like a ``GET``), or none at all when client tracking vouches for it, and the whole
state only when it changed. Constructing a handle creates the instance
(:meth:`Reader.ensure`), as Motion did, unless this process already holds a copy of
it: the creating caller claims the creation (a short-lived claim key), runs
``init_state`` and stores the result with a new incarnation id, so one caller runs
``init_state`` however many race, and keeps the live object it returned as its copy
of version 1. If the instance vanishes later, the next read or enqueue creates it
again, as a new incarnation. In dev mode (:mod:`motion.caller.devmode`) a dev
instance reads production until it exists and is forked from it.

A serve op may be a plain function, a generator, a coroutine or an async generator;
``run`` wants its whole result. The time each op usually takes decides how ``run``
reads the state (see :meth:`ServeTimes.quick`). A cache entry holds the result *and*
the props the serve op left behind (it may add keys for the update ops), so a cache
hit hands the update ops what a fresh serve would have.

Reads are written once, sans-I/O (:mod:`motion.floor.drive`), for the sync and async
handle alike. ``run(after=ticket)`` first waits for that update
(:mod:`motion.caller.ticket`). Caller road: uses :mod:`motion.caller.devmode`,
:mod:`motion.caller.ticket`, :mod:`motion.caller.tracking` and the floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motion.caller import devmode
from motion.caller.ticket import fresh_after
from motion.caller.tracking import get_tracker
from motion.define import ops
from motion.floor import cache, directory, drive, store
from motion.floor import keys as K
from motion.floor.connection import get_async_redis, get_redis, redis_url, translate_errors
from motion.floor.drive import Steps
from motion.floor.errors import InvalidInstanceIdError
from motion.floor.inbox import ALL_FLOWS, Update
from motion.floor.lanes import fast_command
from motion.floor.props import Properties, State
from motion.floor.settings import get_settings

if TYPE_CHECKING:
    from motion.caller.enqueue import Enqueuer
    from motion.caller.wait import Waiter
    from motion.define.component import Component, Op
    from motion.floor.keys import InstanceKeys

CacheWrite = cache.Entry | None  # a serve-cache entry to store
Start = Callable[[str | None, bool], str]  # the handle's check of the flow it runs


#: one ``run``/``gen`` call's arguments: the flow (named once), props, ignore_cache,
#: force_refresh, flush_update, after (a ticket or its string), after_timeout (a plain
#: tuple: made on every call)
Call = tuple[str | None, dict[str, Any] | None, bool, bool, bool, Any, float | None]


_END = object()  # the end of a streamed serve op's items
Loaded = tuple[bytes, State, Any]  # (version tag, state, cached serve entry or None)

#: how long a creation claim holds (ms): past it, a waiting caller creates instead
CLAIM_MS = 30_000
_MAX_DELAY = 0.05


class Reader:
    """Reads (and creates) one instance's state, and serve-cache entries, for a handle."""

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
        if self._production is None:  # (a dev copy exists once production does)
            with translate_errors(f"creating {name}", name):
                # one round trip reads the state, or claims the creation when there is none
                if drive.drive(self.create(), get_redis(name)) is not None:
                    return
        self.read()

    def read(self, flow: str = "", digest: cache.Canonical | None = None) -> Loaded:
        """``(version, state, cache entry)``; the entry of ``(flow, digest)`` if asked."""
        client = get_redis(self._keys.name, self._timeout)
        return drive.drive(self.load(flow, digest), client)

    async def aread(self, flow: str = "", digest: cache.Canonical | None = None) -> Loaded:
        """Async :meth:`read` (never blocks the event loop; ``init_state`` in a thread)."""
        client = get_async_redis(self._keys.name, self._timeout)
        return await drive.adrive(self.load(flow, digest), client)

    def load(self, flow: str = "", digest: cache.Canonical | None = None) -> Steps[Loaded]:
        """The steps of :meth:`read`, to run inside a larger conversation."""
        name = self._keys.name
        with translate_errors(f"reading {name}", name):
            known = store.STATE_CACHE.version_of(name)
            if known and digest is None and not store.STATE_CACHE.churning(name):
                # the common case: one HGET confirms the local copy, or none at all
                # when client tracking vouches for it
                state = store.STATE_CACHE.get(name)
                check = (self._version_is, self._aversion_is, (known,))
                if state is not None and (yield check):
                    return known, state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                reply = yield drive.script("read", keys, args)
                try:
                    loaded = store.parse_read(self._component, self._id, reply)
                except store.StaleCopy:
                    continue
                if loaded is None and self._production is not None:
                    loaded = yield from devmode.read_production(self._component, self._production)
                if loaded is None:
                    loaded = yield from self.create()
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

    def create(self) -> Steps[Loaded | None]:
        """Create the instance with ``init_state`` (once, however many callers race).

        Returns the live state when this call created it, the state read when another
        caller did, or ``None`` (read again)."""
        token = store.nonce()
        delay = 0.001
        claim = [self._keys.meta, self._keys.state, self._keys.claim]
        while True:  # until we hold the claim, or the instance exists
            reply = yield drive.script("read", claim, ["", token, CLAIM_MS])
            if not reply:
                break
            if reply[0] != 0:
                return store.parse_read(self._component, self._id, reply)
            yield drive.pause(delay)  # another caller runs init_state (its claim expires)
            delay = min(2 * delay, _MAX_DELAY)
        try:
            forked = None
            if self._production is not None:  # dev: copy production, at its version
                forked = yield from devmode.fork_source(self._component, self._production)
            if forked is None:
                initial = self._component, self._init_params
                forked = (yield drive.compute(store.initial_state, *initial)), 1
            state, version = forked
            incarnation = store.new_incarnation()
            init = store.init_args(self._component, self._id, state, incarnation, version)
        except BaseException:
            yield drive.command("delete", self._keys.claim)  # let the next caller try at once
            raise
        components = K.part(K.COMPONENTS, self._keys.name)
        keys = [self._keys.meta, self._keys.state, components, self._keys.claim]
        keys.append(K.names(self._component.name, self._keys.name))
        reply = yield drive.script("init", keys, init)
        if reply[0] != 1:
            return None  # it existed after all: read it
        yield drive.either(directory.note_once, directory.anote_once, components)
        # keep the live init_state result as the copy of version 1
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

    async def _aversion_is(self, client: Any, known: bytes) -> bool:
        return bool(await client.hget(self._keys.meta, "tag") == known)


class Server:
    """The one implementation of a handle's ``run``/``arun`` and ``gen``/``agen``: serve
    (on the local copy and enqueue in one trip when that pays, else read, serve, cache),
    then hand the updates to the enqueuer. Sans-I/O: the handle drives it."""

    def __init__(
        self,
        component: Component,
        keys: InstanceKeys,
        reader: Reader,
        enqueuer: Enqueuer,
        waiter: Waiter,
    ) -> None:
        self._component = component
        self._keys = keys
        self._reader = reader
        self._enqueuer = enqueuer
        self._waiter = waiter

    def _open(self, start: Start, call: Call) -> Steps[tuple[str, Properties, bool, bool]]:
        """The opening both calls share: the flow, the props, whether to skip the
        cache, whether to flush (settling first with ``force_refresh``; waiting for
        the update of ``after``, and telling the serve op in ``props.fresh``)."""
        name, props, ignore_cache, force_refresh, flush_update, after, after_timeout = call
        flow = start(name, flush_update)
        properties = Properties(props or {})
        if after is not None:
            properties.fresh = yield from fresh_after(after, after_timeout, self._keys.name)
        if force_refresh:
            yield from self._settle()
        return flow, properties, ignore_cache or force_refresh, flush_update
        return True

    def run(self, start: Start, call: Call, key: str | None = None) -> Steps[Any]:
        """The steps of ``run``: serve, then enqueue the updates (``key``: their
        ``dedup_key``); the serve op's result."""
        flow, properties, skip_cache, flush_update = yield from self._open(start, call)
        op = self._component.serve_op(flow)
        if op is not None and self._serves_ahead(op, flow, skip_cache):
            ahead = yield from self._serve_ahead(op, flow, properties, key)
            if ahead is not None:
                if flush_update:
                    yield from self._waiter.steps(flow, ahead[1], None, own=True)
                return ahead[0]
        value: Any = None
        write: CacheWrite = None
        if op is not None:
            digest = cache.call_digest(self._component, properties)
            loaded = yield from self._reader.load(flow, None if skip_cache else digest)
            where = (self._keys, flow, digest, loaded[0])
            value = cache.cache_hit(self._component, loaded[2], properties, where)
            if value is cache.MISS:
                value = yield (ops.serve_step, ops.aserve_step, (op, loaded[1], properties))
                write = self._entry(flow, digest, loaded[0], value, properties)
        properties.serve_result = value
        if write is not None or self._component.update_ops(flow):
            yield from self._finish(flow, properties, value, write, flush_update, key)
        return value

    def stream(self, start: Start, call: Call) -> Steps[None]:
        """The steps of ``gen``: each item as a :class:`~motion.floor.drive.Item`, then
        enqueue the updates (they see the full list)."""
        flow, properties, skip_cache, flush_update = yield from self._open(start, call)
        op = self._component.serve_op(flow)
        items: list[Any] = []
        write: CacheWrite = None
        if op is not None:
            digest = cache.call_digest(self._component, properties)
            loaded = yield from self._reader.load(flow, None if skip_cache else digest)
            where = (self._keys, flow, digest, loaded[0])
            cached = cache.cache_hit(self._component, loaded[2], properties, where)
            if isinstance(cached, list):  # a streamed result is cached as its full list
                items = cached
                for item in cached:
                    yield drive.Item(item)
            else:
                out = yield drive.either(ops.open_items, ops.aopen_items, op, loaded[1], properties)
                while (
                    item := (yield drive.either(ops.next_item, ops.anext_item, out, _END))
                ) is not _END:
                    items.append(item)
                    yield drive.Item(item)
                write = self._entry(flow, digest, loaded[0], items, properties)
        properties.serve_result = items
        yield from self._finish(flow, properties, items, write, flush_update)

    def _entry(
        self, flow: str, digest: cache.Canonical | None, version: bytes, value: Any, props: Any
    ) -> CacheWrite:
        return cache.cache_write(self._component, self._keys, flow, digest, version, value, props)

    def _finish(
        self,
        flow: str,
        props: Properties,
        value: Any,
        write: CacheWrite,
        flush_update: bool,
        key: str | None = None,
    ) -> Steps[None]:
        """Enqueue the flow's update ops (with the cache entry), or store the entry alone."""
        if self._component.update_ops(flow):
            seq = yield from self.enqueue(Update(flow, dict(props), value), write, key=key)
            assert seq is not None  # no expect: the enqueue always takes it
            if flush_update:
                yield from self._waiter.steps(flow, seq, None, own=True)
        elif write is not None:
            with translate_errors(f"caching a serve result of {self._keys.name}", self._keys.name):
                yield cache.store_entry(write)

    def _serves_ahead(self, op: Op, flow: str, skip_cache: bool) -> bool:
        """Whether ``run`` may serve on the local copy and enqueue in one round trip.

        That pays off when the serve op is quick (running it again on a changed
        state costs less than the round trip saved) and the state did not change
        at the last read; it needs no serve-cache read (cache off, or skipped).
        """
        return (
            bool(self._component.update_ops(flow))
            and (skip_cache or self._component.cache_ttl == 0)
            and ops.SERVE_TIMES.quick(op)
            and self._reader.steady()
        )

    def _serve_ahead(
        self, op: Op, flow: str, props: Properties, key: str | None
    ) -> Steps[tuple[Any, int] | None]:
        """Serve on the local copy and enqueue if it is current: ``(result, seq)``, or
        ``None`` when the state kept changing (the caller takes the two-trip path)."""
        original = dict(props)
        for _ in range(3):
            version, state = self._reader.local_copy()
            if state is None:
                return None
            attempt = Properties(original)
            attempt.fresh = props.fresh
            out = yield (ops.serve_step, ops.aserve_step, (op, state, attempt))
            attempt.serve_result = out
            digest = cache.call_digest(self._component, original)
            write = self._entry(flow, digest, version, out, attempt)
            update = Update(flow, dict(attempt), out)
            seq = yield from self.enqueue(update, write, expect=version, key=key)
            if seq is not None:
                props.update(attempt)
                props.serve_result = out
                return out, seq
        return None

    def _settle(self) -> Steps[None]:
        """Wait for every pending update (``force_refresh``); failures stay for a flush."""
        with translate_errors("force_refresh", self._keys.name):
            target, inc = yield drive.command("hmget", self._keys.meta, "seq", "inc")
        yield from self._waiter.steps(
            ALL_FLOWS, int(target or 0), None, report=False, incarnation=inc
        )

    def enqueue(
        self,
        update: Update,
        cache_write: CacheWrite = None,
        expect: bytes = b"",
        key: str | None = None,
    ) -> Steps[int | None]:
        """Enqueue ``update`` (``key``: its ``dedup_key``); its seq, or ``None`` if the
        state is no longer at ``expect``."""
        enqueued = yield from self._enqueuer.steps(update, cache_write, expect, dedup_key=key)
        if enqueued is None:
            return None
        self._waiter.watch(*enqueued)
        return enqueued[0]
