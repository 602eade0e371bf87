"""The instance handle: run serve ops inline, enqueue updates, wait for them.

A handle is cheap: no thread, no connection of its own (it borrows the process's
pooled clients), so a web server may create one per request.
"""

from __future__ import annotations

import asyncio
import inspect
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

from motion import cache, scripts, store
from motion import keys as K
from motion.connection import get_async_redis, get_redis, redis_url, translate_errors
from motion.errors import (
    InstanceClosedError,
    InvalidInstanceIdError,
)
from motion.inbox import ALL_FLOWS, WRITE_FLOW, Update, encode, enqueue_call, new_token
from motion.inbox import target_field as _target_field
from motion.props import Properties, State
from motion.runtime import (
    call_sync,
    ensure_worker,
    send_wakeup_async,
    send_wakeup_sync,
    wakeup_to_push,
)
from motion.settings import get_settings
from motion.tracking import get_tracker
from motion.waiting import Waiter

if TYPE_CHECKING:
    from motion.component import Component, Op

# fmt: off
_WORDS = (
    "amber", "azure", "brisk", "calm", "cedar", "coral", "dusky", "eager", "fern", "gentle",
    "hazel", "ivory", "jade", "keen", "lunar", "maple", "mellow", "misty", "noble", "ochre",
    "olive", "pearl", "quiet", "rapid", "rustic", "sage", "silver", "sunny", "swift", "tidal",
)
# fmt: on


CacheWrite = tuple[str, bytes, int] | None  # (key, serialized result, ttl) to store


@dataclass
class Served:
    """A serve op's result, and the cache entry to store for it (if any)."""

    value: Any
    cache_write: CacheWrite = None


def random_id() -> str:
    """A random readable instance id, e.g. ``"misty-cedar-4f1a9c"``."""
    return f"{secrets.choice(_WORDS)}-{secrets.choice(_WORDS)}-{secrets.token_hex(3)}"


class Instance:
    """A handle on one instance (e.g. one user) of a component.

    Create it by calling the component: ``handle = Summary("user-42")``. Use
    :meth:`run` / :meth:`arun` to serve and enqueue, :meth:`flush_update` to wait.
    """

    def __init__(
        self,
        component: Component,
        instance_id: str = "",
        init_state_params: dict[str, Any] | None = None,
        **motion_options: Any,
    ) -> None:
        if not isinstance(instance_id, str):
            raise InvalidInstanceIdError(f"instance_id must be a string, got {instance_id!r}.")
        if K.SEPARATOR in instance_id:
            raise InvalidInstanceIdError(
                f"instance_id {instance_id!r} must not contain '{K.SEPARATOR}'."
            )
        self._component = component
        self._id = instance_id or random_id()
        self._init_params = dict(init_state_params or {})
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, self._id))
        self._closed = False
        self._waiter = Waiter(self._keys, component.name)
        self._options = motion_options

    # -- identity ---------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        """The instance id."""
        return self._id

    @property
    def instance_name(self) -> str:
        """``"<Component>__<instance_id>"``, as Motion names it."""
        return self._keys.name

    @property
    def component(self) -> Component:
        """The component this handle belongs to."""
        return self._component

    # -- serving ----------------------------------------------------------------
    def run(
        self,
        flow: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        """Run ``flow``: its serve op inline, then enqueue its update ops.

        Args:
            flow: the flow name (``KeyError`` if the component has none such).
            props: the flow's props; the update ops see keys the serve op adds
                and ``props.serve_result``.
            ignore_cache: skip the serve-result cache read.
            force_refresh: apply every pending update first, then serve fresh.
            flush_update: return only once this run's updates are applied.

        Returns:
            The serve op's result (a list for a generator op; ``None`` when the
            flow has no serve op).
        """
        self._check_open()
        self._component.check_flow(flow)
        properties = Properties(props or {})
        if force_refresh:
            self.flush_update()
        serve = self._component.serve_op(flow)
        skip_cache = ignore_cache or force_refresh
        if serve is not None and self._serves_ahead(serve, flow, skip_cache):
            ahead = self._serve_ahead(serve, flow, properties)
            if ahead is not None:
                value, seq = ahead
                if flush_update:
                    self._waiter.wait(flow, seq, None)
                return value
        served = Served(None)
        if serve is not None:
            served = self._serve(serve, flow, properties, skip_cache)
        properties.serve_result = served.value
        if self._component.update_ops(flow):
            seq = self._enqueue(Update(flow, dict(properties), served.value), served.cache_write)
            if flush_update:
                self._waiter.wait(flow, seq, None)
        elif served.cache_write is not None:
            cache_key, data, ttl = served.cache_write
            with translate_errors(f"caching a serve result of {self._keys.name}"):
                get_redis().set(cache_key, data, ex=ttl)
        return served.value

    def gen(self, flow: str, props: dict[str, Any] | None = None, **kwargs: Any) -> Iterator[Any]:
        """Stream the items of a generator serve op; updates see the full list."""
        self._check_open()
        self._component.check_flow(flow)
        properties = Properties(props or {})
        serve = self._component.serve_op(flow)
        items: list[Any] = []
        if serve is not None:
            state = self._load()[1]
            out = serve.call(state.copy(), properties)
            if inspect.isasyncgen(out) or inspect.iscoroutine(out):
                out = call_sync(_collect(out))
            for item in out if _iterable(out) else [out]:
                items.append(item)
                yield item
        properties.serve_result = items
        if self._component.update_ops(flow):
            seq = self._enqueue(Update(flow, dict(properties), items))
            if kwargs.get("flush_update"):
                self._waiter.wait(flow, seq, None)

    async def arun(
        self,
        flow: str,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
    ) -> Any:
        """Async twin of :meth:`run`: asyncio Redis client, sync ops in a thread."""
        self._check_open()
        self._component.check_flow(flow)
        properties = Properties(props or {})
        if force_refresh:
            await self.aflush_update()
        serve = self._component.serve_op(flow)
        skip_cache = ignore_cache or force_refresh
        if serve is not None and self._serves_ahead(serve, flow, skip_cache):
            ahead = await self._aserve_ahead(serve, flow, properties)
            if ahead is not None:
                value, seq = ahead
                if flush_update:
                    await self._waiter.await_(flow, seq, None)
                return value
        served = Served(None)
        if serve is not None:
            served = await self._aserve(serve, flow, properties, skip_cache)
        properties.serve_result = served.value
        if self._component.update_ops(flow):
            update = Update(flow, dict(properties), served.value)
            seq = await self._aenqueue(update, served.cache_write)
            if flush_update:
                await self._waiter.await_(flow, seq, None)
        elif served.cache_write is not None:
            cache_key, data, ttl = served.cache_write
            await get_async_redis().set(cache_key, data, ex=ttl)
        return served.value

    async def agen(
        self, flow: str, props: dict[str, Any] | None = None, **kwargs: Any
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`gen` for async-generator (or generator) serve ops."""
        self._check_open()
        self._component.check_flow(flow)
        properties = Properties(props or {})
        serve = self._component.serve_op(flow)
        items: list[Any] = []
        if serve is not None:
            state = (await self._aload())[1]
            out = serve.call(state.copy(), properties)
            if inspect.iscoroutine(out):
                out = await out
            if inspect.isasyncgen(out):
                async for item in out:
                    items.append(item)
                    yield item
            else:
                for item in out if _iterable(out) else [out]:
                    items.append(item)
                    yield item
        properties.serve_result = items
        if self._component.update_ops(flow):
            seq = await self._aenqueue(Update(flow, dict(properties), items))
            if kwargs.get("flush_update"):
                await self._waiter.await_(flow, seq, None)

    # -- state ------------------------------------------------------------------
    def read_state(self, key: str, default_value: Any = None) -> Any:
        """The committed value of state ``key`` (``default_value`` if absent)."""
        self._check_open()
        return self._load()[1].get(key, default_value)

    def get_version(self) -> int:
        """The committed state version (1 after creation; +1 per state change)."""
        self._check_open()
        return self._load()[0]

    def write_state(self, state_update: dict[str, Any], latest: bool = False) -> None:
        """Write keys into the state, in order with pending updates; returns once applied.

        ``{}`` does nothing; anything but a dict raises ``TypeError``.
        """
        self._check_open()
        if not isinstance(state_update, dict):
            raise TypeError(
                f"write_state takes a dict of state keys, got {type(state_update).__name__}."
            )
        if not state_update:
            return
        seq = self._enqueue(Update(WRITE_FLOW, dict(state_update)))
        self._waiter.wait(WRITE_FLOW, seq, None)

    # -- waiting ----------------------------------------------------------------
    def flush_update(self, flow: str = ALL_FLOWS, timeout: float | None = None) -> None:
        """Wait until every update of ``flow`` enqueued before this call is applied.

        Raises:
            UpdateFailedError: naming each update this handle enqueued (and any
                update between them) that failed since the last flush.
            FlushTimeoutError: if ``timeout`` seconds pass first.
        """
        self._check_open()
        if flow != ALL_FLOWS:
            self._component.check_flow(flow)
        with translate_errors("flush_update"):
            target = get_redis().hget(self._keys.meta, _target_field(flow))
        self._waiter.wait(flow, int(target or 0), timeout)

    async def aflush_update(self, flow: str = ALL_FLOWS, timeout: float | None = None) -> None:
        """Async twin of :meth:`flush_update`."""
        self._check_open()
        if flow != ALL_FLOWS:
            self._component.check_flow(flow)
        target = await get_async_redis().hget(self._keys.meta, _target_field(flow))
        await self._waiter.await_(flow, int(target or 0), timeout)

    # -- lifecycle --------------------------------------------------------------
    def close(self) -> None:
        """Release the handle (idempotent). Enqueued updates are still applied."""
        self._closed = True

    shutdown = close

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<motion instance {self.instance_name}>"

    # -- internals: serve ---------------------------------------------------------
    def _wait(self, flow: str, seq: int, timeout: float | None) -> None:
        """Wait until update ``seq`` is applied (for the admin utilities and the HTTP app)."""
        self._waiter.wait(flow, seq, timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise InstanceClosedError(f"{self.instance_name} was closed; create a new handle.")

    def _serve(self, op: Op, flow: str, props: Properties, skip_cache: bool) -> Served:
        digest = cache.digest(props) if self._component.cache_ttl > 0 else None
        version, state, hit = self._load(flow, None if skip_cache else digest)
        value = cache.decode(self._component, hit)
        if value is not cache.MISS:
            return Served(value)
        out = _call_timed(op, state, props)
        return Served(out, self._cache_write(flow, digest, version, out))

    async def _aserve(self, op: Op, flow: str, props: Properties, skip_cache: bool) -> Served:
        digest = cache.digest(props) if self._component.cache_ttl > 0 else None
        version, state, hit = await self._aload(flow, None if skip_cache else digest)
        value = cache.decode(self._component, hit)
        if value is not cache.MISS:
            return Served(value)
        out = await _acall_timed(op, state, props)
        return Served(out, self._cache_write(flow, digest, version, out))

    # -- internals: serve ahead (one round trip) --------------------------------------
    def _serves_ahead(self, op: Op, flow: str, skip_cache: bool) -> bool:
        """Whether ``run`` may serve on the local copy and enqueue in one round trip.

        The enqueue script then checks that the copy's version is still the
        committed one (and returns the current state if not, to serve again). That
        pays off when the serve op is quick (re-running it costs less than the
        round trip it saves) and the state is not changing between calls; it needs
        no serve-cache read (the cache is off, or skipped).
        """
        name = self._keys.name
        return (
            bool(self._component.update_ops(flow))
            and (skip_cache or self._component.cache_ttl == 0)
            and SERVE_TIMES.quick(op)
            and not store.STATE_CACHE.churning(name)
            and bool(store.STATE_CACHE.version_of(name))
        )

    def _serve_ahead(self, op: Op, flow: str, props: Properties) -> tuple[Any, int] | None:
        """Serve on the local copy and enqueue if it is current: ``(result, seq)``, or
        ``None`` when the state kept changing (the caller takes the two-trip path)."""
        original = dict(props)
        for _ in range(3):
            version, state = self._local_copy()
            if state is None:
                return None
            attempt = Properties(original)
            out = _call_timed(op, state, attempt)
            attempt.serve_result = out
            write = self._cache_write(flow, self._digest(original), int(version), out)
            seq = self._enqueue(Update(flow, dict(attempt), out), write, expect=version)
            if seq is not None:
                props.clear()
                props.update(attempt)
                props.serve_result = out
                return out, seq
        return None

    async def _aserve_ahead(self, op: Op, flow: str, props: Properties) -> tuple[Any, int] | None:
        """Async :meth:`_serve_ahead`."""
        original = dict(props)
        for _ in range(3):
            version, state = self._local_copy()
            if state is None:
                return None
            attempt = Properties(original)
            out = await _acall_timed(op, state, attempt)
            attempt.serve_result = out
            write = self._cache_write(flow, self._digest(original), int(version), out)
            seq = await self._aenqueue(Update(flow, dict(attempt), out), write, expect=version)
            if seq is not None:
                props.clear()
                props.update(attempt)
                props.serve_result = out
                return out, seq
        return None

    def _local_copy(self) -> tuple[bytes, State | None]:
        name = self._keys.name
        version = store.STATE_CACHE.version_of(name)
        return version, store.STATE_CACHE.get(name) if version else None

    def _digest(self, props: dict[str, Any]) -> str | None:
        """The serve-cache digest of the props the serve op was called with (cache on)."""
        return cache.digest(Properties(props)) if self._component.cache_ttl > 0 else None

    def _cache_write(
        self, flow: str, digest: str | None, version: int, value: Any
    ) -> tuple[str, bytes, int] | None:
        data = cache.encode(self._component, value) if digest else None
        if data is None or digest is None:
            return None
        return cache.key(self._keys, flow, digest, version), data, self._component.cache_ttl

    def _read_call(self, flow: str, digest: str | None) -> tuple[list[str], list[Any]]:
        known = store.STATE_CACHE.version_of(self._keys.name)
        keys = [self._keys.meta, self._keys.state]
        if known and digest:
            keys.append(cache.key(self._keys, flow, digest, known))
        return keys, [known]

    def _load(self, flow: str = "", digest: str | None = None) -> tuple[int, State, Any]:
        name = self._keys.name
        with translate_errors(f"reading {name}"):
            client = get_redis()
            known = store.STATE_CACHE.version_of(name)
            if known and digest is None and not store.STATE_CACHE.churning(name):
                # the common case: one HGET (like a GET) confirms the local copy, or
                # none at all when client tracking vouches for it
                state = store.STATE_CACHE.get(name)
                if state is not None and self._version_is(client, known):
                    return int(known), state, None
            for _ in range(3):
                keys, args = self._read_call(flow, digest)
                try:
                    loaded = store.parse_read(
                        self._component, self._id, scripts.run(client, "read", keys, args)
                    )
                except store.StaleCopy:
                    continue
                if loaded is not None:
                    return loaded
                self._create(client)
        raise InvalidInstanceIdError(f"{name} vanished while being created; try again.")

    async def _aload(self, flow: str = "", digest: str | None = None) -> tuple[int, State, Any]:
        name = self._keys.name
        client = get_async_redis()
        known = store.STATE_CACHE.version_of(name)
        if known and digest is None and not store.STATE_CACHE.churning(name):
            state = store.STATE_CACHE.get(name)
            if state is not None and await client.hget(self._keys.meta, "version") == known:
                return int(known), state, None
        for _ in range(3):
            keys, args = self._read_call(flow, digest)
            try:
                loaded = store.parse_read(
                    self._component, self._id, await scripts.arun(client, "read", keys, args)
                )
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

    def _version_is(self, client: Any, known: bytes) -> bool:
        if not get_settings().client_tracking:
            return bool(client.hget(self._keys.meta, "version") == known)
        tracker = get_tracker(redis_url())
        name = self._keys.name
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

    def _create(self, client: Any) -> None:
        state = store.initial_state(self._component, self._init_params)
        init = store.init_args(self._component, self._id, state)
        scripts.run(client, "init", self._init_keys(), init)

    # -- internals: enqueue and wait ----------------------------------------------
    @overload
    def _enqueue(self, update: Update, cache_write: CacheWrite = None) -> int: ...

    @overload
    def _enqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes
    ) -> int | None: ...

    def _enqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes = b""
    ) -> int | None:
        """Enqueue ``update``; its seq, or ``None`` if the state is no longer at ``expect``."""
        entry = encode(self._component, self._keys.name, update)
        wakeup = wakeup_to_push(self._component.name, self._id, update.flow)
        keys, args = enqueue_call(
            self._keys, entry, update.flow, wakeup, expect=expect, token=new_token()
        )
        with translate_errors(f"enqueueing {update.flow!r} for {self._keys.name}"):
            client = get_redis()
            if cache_write is None:
                reply = scripts.run(client, "enqueue", keys, args)
            else:  # one round trip for both
                reply = scripts.run_after(client, ("set", cache_write), "enqueue", keys, args)
            if reply[0] == 0:  # a new instance: create it, then enqueue
                self._create(client)
                reply = scripts.run(client, "enqueue", keys, args)
        seq = self._enqueued(update, reply)
        if seq is not None and reply[1] == 1:
            # the script could not push it (another broker): send it now
            send_wakeup_sync(self._component.name, self._id, update.flow, seq)
        return seq

    @overload
    async def _aenqueue(self, update: Update, cache_write: CacheWrite = None) -> int: ...

    @overload
    async def _aenqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes
    ) -> int | None: ...

    async def _aenqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes = b""
    ) -> int | None:
        """Async :meth:`_enqueue`."""
        entry = encode(self._component, self._keys.name, update)
        wakeup = wakeup_to_push(self._component.name, self._id, update.flow)
        keys, args = enqueue_call(
            self._keys, entry, update.flow, wakeup, expect=expect, token=new_token()
        )
        client = get_async_redis()
        if cache_write is None:
            reply = await scripts.arun(client, "enqueue", keys, args)
        else:
            reply = await scripts.arun_after(client, ("set", cache_write), "enqueue", keys, args)
        if reply[0] == 0:
            await self._aload()  # creates the instance
            reply = await scripts.arun(client, "enqueue", keys, args)
        seq = self._enqueued(update, reply)
        if seq is not None and reply[1] == 1:
            await send_wakeup_async(self._component.name, self._id, update.flow, seq)
        return seq

    def _enqueued(self, update: Update, reply: list[Any]) -> int | None:
        """Interpret the enqueue script's reply (see ``lua/enqueue.lua``)."""
        if reply[0] == -1:  # the state moved on: remember it, so the caller serves again
            store.parse_read(self._component, self._id, [reply[1], 0, *reply[2:]])
            return None
        seq = int(reply[0])
        self._waiter.watch(update.flow, seq)
        ensure_worker()
        return seq


def _iterable(value: Any) -> bool:
    return inspect.isgenerator(value) or isinstance(value, list | tuple)


async def _collect(value: Any) -> Any:
    if inspect.iscoroutine(value):
        value = await value
    if inspect.isasyncgen(value):
        return [item async for item in value]
    if inspect.isgenerator(value):
        return list(value)
    return value


def _call_and_list(op: Op, state: State, props: Properties) -> Any:
    out = op.call(state, props)
    if inspect.iscoroutine(out) or inspect.isasyncgen(out):
        return call_sync(_collect(out))
    return list(out) if inspect.isgenerator(out) else out


def _call_timed(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion in this thread, timing it."""
    started = time.perf_counter()
    out = _call_and_list(op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


async def _acall_timed(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion without blocking the event loop, timing it."""
    started = time.perf_counter()
    if op.is_async:
        out = await _collect(op.call(state.copy(), props))
    else:  # a sync op must not block the event loop
        out = await asyncio.to_thread(_call_and_list, op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


class ServeTimes:
    """How long each serve op usually takes (a moving average), to pick the serve path."""

    #: ops quicker than this may run again on a changed state at less cost than the
    #: round trip that serving ahead saves
    QUICK_SECONDS = 0.001

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}

    def record(self, op: Op, seconds: float) -> None:
        """Fold one run of ``op`` into its average."""
        key = id(op)
        previous = self._seconds.get(key)
        self._seconds[key] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def quick(self, op: Op) -> bool:
        """Whether ``op`` is known to be quick (unknown ops are not)."""
        return self._seconds.get(id(op), 1.0) < self.QUICK_SECONDS


#: the process's serve-op timings
SERVE_TIMES = ServeTimes()
