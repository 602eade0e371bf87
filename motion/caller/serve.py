"""Running serve ops in the caller: to completion, timed, and through the result cache.

A serve op may be a plain function, a generator, a coroutine or an async
generator; ``run`` wants its whole result. The time each op usually takes
decides how ``run`` reads the state (see :meth:`ServeTimes.quick`). A cache
entry holds the result *and* the props the serve op left behind (it may add
keys for the update ops), so a cache hit hands the update ops what a fresh
serve would have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motion.floor import cache, scripts
from motion.floor.props import Properties, State

if TYPE_CHECKING:
    from motion.define.component import Component, Op
    from motion.floor.keys import InstanceKeys

CacheWrite = cache.Entry | None  # a serve-cache entry to store
MISS = cache.MISS


@dataclass
class Served:
    """A serve op's result, and the cache entry to store for it (if any)."""

    value: Any
    cache_write: CacheWrite = None


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
        """Whether ``op`` is known to be quick (an op not run yet is not)."""
        return self._seconds.get(id(op), 1.0) < self.QUICK_SECONDS


#: the process's serve-op timings
SERVE_TIMES = ServeTimes()


def call(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion in this thread (on a copy of ``state``), timing it."""
    started = time.perf_counter()
    out = _call_and_list(op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


async def acall(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion without blocking the event loop, timing it."""
    started = time.perf_counter()
    if op.is_async:
        out = await collect(op.call(state.copy(), props))
    else:  # a sync op must not block the event loop
        out = await asyncio.to_thread(_call_and_list, op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


def iterable(value: Any) -> bool:
    """Whether a serve op's output is a sequence of items to stream."""
    return inspect.isgenerator(value) or isinstance(value, list | tuple)


async def collect(value: Any) -> Any:
    """Await a coroutine and drain an (async) generator into a list."""
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
        return call_sync(collect(out))
    return list(out) if inspect.isgenerator(out) else out


# -- the serve-result cache ----------------------------------------------------------
def digest(component: Component, props: dict[str, Any]) -> cache.Canonical | None:
    """The canonical form of the props a serve op is called with (``None``: not cached)."""
    return cache.canonical_props(props) if component.cache_ttl > 0 else None


def cache_write(
    component: Component,
    keys: InstanceKeys,
    flow: str,
    props_digest: cache.Canonical | None,
    version: bytes,
    value: Any,
    props: dict[str, Any],
) -> CacheWrite:
    """The cache entry of a serve call at version tag ``version``: its result and what
    it did to the props (``props_digest`` is their form before the call)."""
    if props_digest is None:
        return None
    delta = cache.changes(props_digest, props)
    if delta is None:
        return None
    hash_key, entry = cache.key(keys, flow, props_digest.digest, version)
    data = cache.encode(component, (value, *delta), cache.binding(hash_key, entry))
    if data is None:
        return None
    tag = version.decode() if isinstance(version, bytes) else str(version)
    return cache.Entry(keys.meta, hash_key, entry, data, component.cache_ttl, tag)


def cache_hit(
    component: Component,
    raw: Any,
    props: Properties,
    where: tuple[InstanceKeys, str, cache.Canonical | None, bytes] | None = None,
) -> Any:
    """The cached result (redoing what its serve op did to the props), or :data:`MISS`.

    ``where`` is ``(keys, flow, props' canonical form, version tag)`` of the entry: its
    signature must be for that entry."""
    if raw is None or where is None:
        return MISS
    keys, flow, props_digest, version = where
    if props_digest is None:
        return MISS
    hash_key, entry_field = cache.key(keys, flow, props_digest.digest, version)
    entry = cache.decode(component, raw, cache.binding(hash_key, entry_field))
    if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[1], dict)):
        return MISS
    value, changed, removed = entry
    props.update(changed)
    for name in removed:
        props.pop(name, None)
    return value


def store_entry(client: Any, entry: cache.Entry) -> None:
    """Store a cache entry, unless the state moved on since its serve op ran."""
    scripts.run(client, "cache", *entry.call())


async def astore_entry(client: Any, entry: cache.Entry) -> None:
    """Async :func:`store_entry`."""
    await scripts.arun(client, "cache", *entry.call())


def call_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
