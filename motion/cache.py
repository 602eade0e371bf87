"""The serve-result cache: keyed by flow, canonical props and state version.

Because the key holds the state version, a committed update invalidates every
cached result of the instance at once (Motion's cache ignored the version and
served stale answers). Props are canonical: ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` share an entry. Props that cannot be made canonical are
simply not cached.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import TYPE_CHECKING, Any

import redis
import redis.asyncio

from motion.keys import InstanceKeys

if TYPE_CHECKING:
    from motion.component import Component

MISS = object()


def canonical(props: dict[str, Any]) -> bytes | None:
    """Bytes equal for equal props whatever their key order; ``None`` if not possible."""
    try:
        return json.dumps(props, sort_keys=True, separators=(",", ":")).encode()
    except (TypeError, ValueError):
        pass
    try:
        return pickle.dumps(sorted(props.items()), protocol=5)
    except Exception:
        return None


def key(keys: InstanceKeys, flow: str, props: dict[str, Any], version: int) -> str | None:
    """The cache key of a serve call, or ``None`` when its props cannot be cached."""
    data = canonical(props)
    if data is None:
        return None
    digest = hashlib.blake2b(data, digest_size=16).hexdigest()
    return f"{keys.cache_prefix}{flow}:{version}:{digest}"


def _decode(component: Component, raw: Any) -> Any:
    if raw is None:
        return MISS
    try:
        return component.serializer.loads(raw)
    except Exception:
        return MISS  # an unreadable entry is a miss, recomputed and overwritten


def _encode(component: Component, value: Any) -> bytes | None:
    try:
        return component.serializer.dumps(value)
    except Exception:
        return None  # an unpicklable result is served, just not cached


def get(client: redis.Redis, component: Component, ckey: str) -> Any:
    """The cached result, or :data:`MISS`."""
    return _decode(component, client.get(ckey))


def put(client: redis.Redis, component: Component, ckey: str, value: Any) -> None:
    """Cache ``value`` for ``component.cache_ttl`` seconds."""
    data = _encode(component, value)
    if data is not None:
        client.set(ckey, data, ex=component.cache_ttl)


async def aget(client: redis.asyncio.Redis, component: Component, ckey: str) -> Any:
    """Async :func:`get`."""
    return _decode(component, await client.get(ckey))


async def aput(client: redis.asyncio.Redis, component: Component, ckey: str, value: Any) -> None:
    """Async :func:`put`."""
    data = _encode(component, value)
    if data is not None:
        await client.set(ckey, data, ex=component.cache_ttl)
