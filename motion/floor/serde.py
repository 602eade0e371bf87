"""Serialization of state values and inbox payloads, and their optional signing.

State values are serialized one by one (so an update that changes one key writes
one field); the default serializer is cloudpickle, and any object with ``dumps``
and ``loads`` can replace it. Inbox payloads are framed as::

    b"M1U" + body               unsigned
    b"M1S" + hmac_sha256 + body signed with MOTION_SIGNING_KEY

With a signing key configured, a worker refuses (and records, without
unpickling) any payload whose signature is missing or wrong, so a process that
can write to Redis but lacks the key cannot get code run on a worker.

Values at rest that are unpickled later (state values, serve-cache entries) are
stored as the serializer wrote them, or, with a signing key, framed and signed
the same way (:func:`dump_stored` / :func:`load_stored`): a value planted in Redis
without the key is refused, never deserialized, by workers and callers alike.

A signature binds the value to where it belongs (:func:`binding`): a state value
to its instance, field and incarnation, a payload to its instance, a cache entry
to its key. The MAC covers that place and the body, so a signed value copied to
another instance, another field, or a later life of the same instance is refused
like a forged one.

Floor; uses the floor (errors, settings).
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, Protocol

import cloudpickle

from motion.floor.errors import PayloadError, SerializationError, StateTooLargeError
from motion.floor.settings import get_settings

_MAGIC = b"M1"
_SIGNED = _MAGIC + b"S"
_UNSIGNED = _MAGIC + b"U"
_MAC_BYTES = hashlib.sha256().digest_size


class Serializer(Protocol):
    """Turns a value into bytes and back."""

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``."""
        ...

    def loads(self, data: bytes) -> Any:
        """Deserialize bytes made by :meth:`dumps`."""
        ...


class Definition(Protocol):
    """What the floor needs of a component definition: its name, serializer, state
    hooks and serve-cache lifetime. :class:`motion.define.component.Component` is one;
    the floor takes it as this, so it never imports the definition layer."""

    serializer: Serializer
    init_state_func: Callable[..., dict[str, Any]] | None
    save_state_func: Callable[..., Any] | None
    load_state_func: Callable[..., Any] | None

    @property
    def name(self) -> str:
        """The component's name."""
        ...

    @property
    def cache_ttl(self) -> int:
        """Seconds a cached serve result lives."""
        ...


class CloudpickleSerializer:
    """The default serializer: cloudpickle, so lambdas and local classes work."""

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value`` with cloudpickle."""
        return bytes(cloudpickle.dumps(value))

    def loads(self, data: bytes) -> Any:
        """Deserialize with pickle (cloudpickle output is plain pickle)."""
        return cloudpickle.loads(data)


DEFAULT_SERIALIZER: Serializer = CloudpickleSerializer()


def dump_value(serializer: Serializer, what: str, value: Any, limit: int) -> bytes:
    """Serialize one value, naming ``what`` in the error if it cannot be done."""
    try:
        data = serializer.dumps(value)
    except Exception as exc:
        raise SerializationError(
            f"{what} cannot be serialized ({type(exc).__name__}: {exc}); "
            f"keep it to picklable values, or add save_state/load_state hooks."
        ) from exc
    if len(data) > limit:
        raise StateTooLargeError(
            f"{what} is {len(data):,} bytes serialized, over the limit of {limit:,} "
            f"(MOTION_MAX_VALUE_BYTES); store large data elsewhere and keep a reference."
        )
    return data


def load_value(serializer: Serializer, what: str, data: bytes) -> Any:
    """Deserialize one value, naming ``what`` in the error if it is unreadable."""
    try:
        return serializer.loads(data)
    except Exception as exc:
        raise SerializationError(
            f"{what} cannot be deserialized ({type(exc).__name__}: {exc}); was it "
            f"written by an incompatible version of the code?"
        ) from exc


def binding(*parts: str | bytes) -> bytes:
    """The place a signed value belongs to, e.g. ``binding(name, field, incarnation)``.

    Each part is length-prefixed, so no two different places give the same bytes.
    """
    out = b""
    for part in parts:
        raw = part.encode() if isinstance(part, str) else part
        out += len(raw).to_bytes(4, "big") + raw
    return out


def dump_stored(
    serializer: Serializer, what: str, value: Any, limit: int, bind: bytes = b""
) -> bytes:
    """Serialize a value to store (signed, bound to ``bind``, when ``MOTION_SIGNING_KEY``
    is set)."""
    data = dump_value(serializer, what, value, limit)
    key = get_settings().signing_key
    return data if key is None else seal(data, key, bind)


def load_stored(serializer: Serializer, what: str, data: bytes, bind: bytes = b"") -> Any:
    """Deserialize a stored value, checking its signature (and that it was signed for
    ``bind``) when a signing key is set."""
    key = get_settings().signing_key
    if key is not None or data.startswith(_SIGNED):
        try:
            data = unseal(data, key, bind)
        except PayloadError as exc:
            raise SerializationError(
                f"{what} was refused: {exc}. Values written without MOTION_SIGNING_KEY (or "
                f"with another key, or signed for another instance, field or incarnation) are "
                f"not deserialized; clear or re-create the instance with the key set."
            ) from exc
    return load_value(serializer, what, data)


def _mac(key: bytes, bind: bytes, body: bytes) -> bytes:
    return hmac.new(key, len(bind).to_bytes(4, "big") + bind + body, hashlib.sha256).digest()


def seal(body: bytes, key: bytes | None, bind: bytes = b"") -> bytes:
    """Frame a payload body, signing it (for the place ``bind``) when a key is given."""
    if key is None:
        return _UNSIGNED + body
    return _SIGNED + _mac(key, bind, body) + body


def unseal(payload: bytes, key: bytes | None, bind: bytes = b"") -> bytes:
    """Check a framed payload (signed for ``bind``) and return its body; raises
    :class:`PayloadError`."""
    if payload.startswith(_SIGNED):
        mac = payload[3 : 3 + _MAC_BYTES]
        body = payload[3 + _MAC_BYTES :]
        if len(mac) != _MAC_BYTES:
            raise PayloadError("payload is truncated (signature incomplete)")
        if key is None:
            return body
        if not hmac.compare_digest(mac, _mac(key, bind, body)):
            raise PayloadError(
                "payload signature is wrong (forged, signed with another key, or copied from "
                "another instance, field or incarnation); refusing to deserialize it"
            )
        return body
    if payload.startswith(_UNSIGNED):
        if key is not None:
            raise PayloadError(
                "payload is unsigned but MOTION_SIGNING_KEY is set; refusing to deserialize it"
            )
        return payload[3:]
    raise PayloadError("payload has no motion header (not written by motion, or corrupt)")


_NO_ATTRIBUTE = re.compile(r"Can't get attribute '([^']+)' on <module '([^']+)'")


def needs_code(exc: BaseException) -> str | None:
    """The module (``"module"``) or class (``"module:name"``) a payload names that this
    process lacks, if that is why it failed to decode."""
    cause = exc.__cause__
    if isinstance(cause, ModuleNotFoundError):
        return cause.name or "?"
    found = _NO_ATTRIBUTE.search(str(cause)) if isinstance(cause, AttributeError) else None
    return f"{found[2]}:{found[1]}" if found else None
