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
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any, Protocol

import cloudpickle

from motion.errors import PayloadError, SerializationError, StateTooLargeError
from motion.settings import get_settings

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


def dump_stored(serializer: Serializer, what: str, value: Any, limit: int) -> bytes:
    """Serialize a value to store (signed when ``MOTION_SIGNING_KEY`` is set)."""
    data = dump_value(serializer, what, value, limit)
    key = get_settings().signing_key
    return data if key is None else seal(data, key)


def load_stored(serializer: Serializer, what: str, data: bytes) -> Any:
    """Deserialize a stored value, checking its signature when a signing key is set."""
    key = get_settings().signing_key
    if key is not None or data.startswith(_SIGNED):
        try:
            data = unseal(data, key)
        except PayloadError as exc:
            raise SerializationError(
                f"{what} was refused: {exc}. Values written without MOTION_SIGNING_KEY (or "
                f"with another key) are not deserialized; clear or re-create the instance "
                f"with the key set."
            ) from exc
    return load_value(serializer, what, data)


def seal(body: bytes, key: bytes | None) -> bytes:
    """Frame a payload body, signing it when a key is given."""
    if key is None:
        return _UNSIGNED + body
    mac = hmac.new(key, body, hashlib.sha256).digest()
    return _SIGNED + mac + body


def unseal(payload: bytes, key: bytes | None) -> bytes:
    """Check a framed payload and return its body; raises :class:`PayloadError`."""
    if payload.startswith(_SIGNED):
        mac = payload[3 : 3 + _MAC_BYTES]
        body = payload[3 + _MAC_BYTES :]
        if len(mac) != _MAC_BYTES:
            raise PayloadError("payload is truncated (signature incomplete)")
        if key is None:
            return body
        expected = hmac.new(key, body, hashlib.sha256).digest()
        if not hmac.compare_digest(mac, expected):
            raise PayloadError("payload signature is wrong; refusing to deserialize it")
        return body
    if payload.startswith(_UNSIGNED):
        if key is not None:
            raise PayloadError(
                "payload is unsigned but MOTION_SIGNING_KEY is set; refusing to deserialize it"
            )
        return payload[3:]
    raise PayloadError("payload has no motion header (not written by motion, or corrupt)")
