"""The serve-result cache: keyed by flow, canonical props and state version.

Because the key holds the state's version tag (version, incarnation and nonce),
a committed update invalidates every cached result of the instance at once, and
no entry of an earlier incarnation is ever found by a later one (Motion's cache
ignored the version and served stale answers). Props are canonical: ``{"a": 1, "b": 2}`` and
``{"b": 2, "a": 1}`` share an entry. Props that cannot be made canonical are
simply not cached.
"""

from __future__ import annotations

import hashlib
import json
import pickle
from typing import TYPE_CHECKING, Any

from motion.keys import InstanceKeys
from motion.serde import dump_stored, load_stored
from motion.settings import get_settings

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


def digest(props: dict[str, Any]) -> str | None:
    """A short digest of the canonical props, or ``None`` when they cannot be cached."""
    data = canonical(props)
    return None if data is None else hashlib.blake2b(data, digest_size=16).hexdigest()


def key(keys: InstanceKeys, flow: str, props_digest: str, version: bytes | str) -> str:
    """The cache key of a serve call of ``flow`` at the state's version tag ``version``."""
    if isinstance(version, bytes):
        version = version.decode()
    return f"{keys.cache_prefix}{flow}:{version}:{props_digest}"


def decode(component: Component, raw: Any, cache_key: str = "") -> Any:
    """A cached result from its bytes (signed, with a signing key, for ``cache_key``), or
    :data:`MISS`."""
    if raw is None:
        return MISS
    try:
        return load_stored(component.serializer, "a cached serve result", raw, cache_key.encode())
    except Exception:
        return MISS  # an unreadable (or unsigned) entry is a miss, recomputed and overwritten


def encode(component: Component, value: Any, cache_key: str = "") -> bytes | None:
    """Bytes to cache for ``value`` at ``cache_key`` (a signature binds them to it), or
    ``None`` when it cannot be serialized."""
    try:
        limit = get_settings().max_value_bytes
        return dump_stored(component.serializer, "a serve result", value, limit, cache_key.encode())
    except Exception:
        return None  # an unpicklable (or too large) result is served, just not cached
