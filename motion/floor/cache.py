"""The serve-result cache: keyed by flow, canonical typed props and state version.

Entries live in one hash per instance (:attr:`~motion.floor.keys.InstanceKeys.cache`),
one field per ``tag:flow:digest``, where ``tag`` is the state's version tag
(version, incarnation and nonce), so no entry of an earlier incarnation is ever
found by a later one. The commit that moves the version on deletes the hash, so
superseded entries go at once instead of living out their TTL, and an entry whose
serve op ran before a commit landed is not stored (the ``cache`` script checks the
tag); each entry also carries its own expiry (``cache_ttl`` after it was written)
and, with a signing key, a signature bound to its hash and field.

Props are canonical *with their types*: ``{"a": 1, "b": 2}`` and ``{"b": 2, "a": 1}``
share an entry, while ``{1: "a"}`` and ``{"1": "a"}``, ``(1, 2)`` and ``[1, 2]``,
``1``, ``1.0`` and ``True`` do not. Props holding anything but ``None``, bools,
ints, floats, strings, bytes and (frozen)sets, lists, tuples and dicts of them are
not cached (never risking a collision). An entry keeps only the props the serve op
added or changed (and the names of those it removed), not a copy of all of them.

Floor; uses the floor (drive, keys, props, serde, settings).
"""

from __future__ import annotations

import hashlib
import struct
import time
from dataclasses import dataclass
from typing import Any, NamedTuple

from motion.floor.drive import Step, script
from motion.floor.keys import InstanceKeys
from motion.floor.props import Properties
from motion.floor.serde import Definition, dump_stored, load_stored
from motion.floor.settings import get_settings

MISS = object()


class Entry(NamedTuple):
    """A serve-cache entry to store (by the ``cache`` script, see ``lua/cache.lua``)."""

    meta: str
    hash: str
    field: str
    data: bytes
    ttl: int
    version: str

    def call(self) -> tuple[list[str], list[Any]]:
        """The keys and arguments of the ``cache`` script."""
        return [self.meta, self.hash], [self.version, self.field, self.data, self.ttl]


class _Unencodable(Exception):
    """A value with no canonical form."""


def _encode(value: Any, out: list[bytes]) -> None:
    kind = type(value)
    if value is None:
        out.append(b"N")
    elif kind is bool:
        out.append(b"T" if value else b"F")
    elif kind is int:
        text = str(value).encode()
        out.append(b"i%d:%s" % (len(text), text))
    elif kind is float:
        out.append(b"f" + struct.pack(">d", value))
    elif kind is str:
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:%s" % (len(data), data))
    elif kind is bytes:
        out.append(b"b%d:%s" % (len(value), value))
    elif kind in (list, tuple):
        out.append(b"l%d:" % len(value) if kind is list else b"t%d:" % len(value))
        for item in value:
            _encode(item, out)
    elif kind in (set, frozenset):
        items = sorted(canonical_value(item) for item in value)
        out.append(b"S%d:" % len(items) if kind is set else b"Z%d:" % len(items))
        out.extend(items)
    elif kind is dict:
        pairs = sorted(canonical_value(k) + canonical_value(v) for k, v in value.items())
        out.append(b"d%d:" % len(pairs))
        out.extend(pairs)
    else:
        raise _Unencodable(kind.__name__)


def canonical_value(value: Any) -> bytes:
    """The canonical bytes of one value (type-tagged, length-prefixed); raises
    :class:`_Unencodable` for a value without one."""
    out: list[bytes] = []
    _encode(value, out)
    return b"".join(out)


@dataclass(frozen=True)
class Canonical:
    """The canonical form of a serve call's props: their digest, and each prop's bytes
    (to find what the serve op changed)."""

    digest: str
    parts: dict[Any, bytes]


def canonical_props(props: dict[Any, Any]) -> Canonical | None:
    """The canonical form of ``props``, or ``None`` when they cannot be cached."""
    try:
        parts = {k: canonical_value(k) + canonical_value(v) for k, v in props.items()}
    except (_Unencodable, RecursionError):
        return None
    data = b"d%d:" % len(parts) + b"".join(sorted(parts.values()))
    return Canonical(hashlib.blake2b(data, digest_size=16).hexdigest(), parts)


def canonical(props: dict[Any, Any]) -> bytes | None:
    """Bytes equal for equal props (same types) whatever their key order; ``None`` if
    not possible."""
    try:
        return canonical_value(dict(props))
    except (_Unencodable, RecursionError):
        return None


def digest(props: dict[Any, Any]) -> str | None:
    """A short digest of the canonical props, or ``None`` when they cannot be cached."""
    form = canonical_props(props)
    return None if form is None else form.digest


def field(flow: str, props_digest: str, version: bytes | str) -> str:
    """The field of a serve call of ``flow`` at state version tag ``version``."""
    if isinstance(version, bytes):
        version = version.decode()
    return f"{version}:{flow}:{props_digest}"


def key(keys: InstanceKeys, flow: str, props_digest: str, version: bytes | str) -> tuple[str, str]:
    """The cache hash of the instance and the field of a serve call in it."""
    return keys.cache, field(flow, props_digest, version)


def binding(hash_key: str, entry_field: str) -> bytes:
    """What a signed entry is bound to: its hash (the instance) and field (the tag)."""
    return f"{hash_key}|{entry_field}".encode()


def changes(before: Canonical, after: dict[Any, Any]) -> tuple[dict[Any, Any], list[Any]] | None:
    """What the serve op did to the props: ``(added or changed, removed keys)``;
    ``None`` when a changed prop has no canonical form (then the call is not cached)."""
    changed: dict[Any, Any] = {}
    try:
        for k, v in after.items():
            if before.parts.get(k) != canonical_value(k) + canonical_value(v):
                changed[k] = v
    except (_Unencodable, RecursionError):
        return None
    return changed, [k for k in before.parts if k not in after]


def decode(component: Definition, raw: Any, bind: bytes = b"") -> Any:
    """A cached result from its bytes (signed, with a signing key, for ``bind``), or
    :data:`MISS` (also once it expired)."""
    if raw is None:
        return MISS
    try:
        expires, _, data = bytes(raw).partition(b"|")
        if int(expires) < time.time() * 1000:
            return MISS
        return load_stored(component.serializer, "a cached serve result", data, bind)
    except Exception:
        return MISS  # an unreadable (or unsigned) entry is a miss, recomputed and overwritten


def encode(component: Definition, value: Any, bind: bytes = b"") -> bytes | None:
    """Bytes to cache for ``value`` (with its expiry; signed for ``bind``), or ``None``
    when it cannot be serialized."""
    try:
        limit = get_settings().max_value_bytes
        data = dump_stored(component.serializer, "a serve result", value, limit, bind)
    except Exception:
        return None  # an unpicklable (or too large) result is served, just not cached
    expires = int(time.time() * 1000 + component.cache_ttl * 1000)
    return b"%d|%s" % (expires, data)


# -- a serve call's entry -------------------------------------------------------------
def call_digest(component: Definition, props: dict[str, Any]) -> Canonical | None:
    """The canonical form of the props a serve op is called with (``None``: not cached)."""
    return canonical_props(props) if component.cache_ttl > 0 else None


def cache_write(
    component: Definition,
    keys: InstanceKeys,
    flow: str,
    props_digest: Canonical | None,
    version: bytes,
    value: Any,
    props: dict[str, Any],
) -> Entry | None:
    """The cache entry of a serve call at version tag ``version``: its result and what
    it did to the props (``props_digest`` is their form before the call)."""
    if props_digest is None:
        return None
    delta = changes(props_digest, props)
    if delta is None:
        return None
    hash_key, entry = key(keys, flow, props_digest.digest, version)
    data = encode(component, (value, *delta), binding(hash_key, entry))
    if data is None:
        return None
    tag = version.decode() if isinstance(version, bytes) else str(version)
    return Entry(keys.meta, hash_key, entry, data, component.cache_ttl, tag)


def cache_hit(
    component: Definition,
    raw: Any,
    props: Properties,
    where: tuple[InstanceKeys, str, Canonical | None, bytes] | None = None,
) -> Any:
    """The cached result (redoing what its serve op did to the props), or :data:`MISS`.

    ``where`` is ``(keys, flow, props' canonical form, version tag)`` of the entry: its
    signature must be for that entry."""
    if raw is None or where is None:
        return MISS
    keys, flow, props_digest, version = where
    if props_digest is None:
        return MISS
    hash_key, entry_field = key(keys, flow, props_digest.digest, version)
    entry = decode(component, raw, binding(hash_key, entry_field))
    if not (isinstance(entry, tuple) and len(entry) == 3 and isinstance(entry[1], dict)):
        return MISS
    value, changed, removed = entry
    props.update(changed)
    for name in removed:
        props.pop(name, None)
    return value


def store_entry(entry: Entry) -> Step:
    """Store a cache entry, unless the state moved on since its serve op ran."""
    return script("cache", *entry.call())
