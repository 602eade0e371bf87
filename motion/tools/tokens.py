"""HTTP credentials: the API key, the token secret, and the tokens it signs.

The HTTP :class:`~motion.tools.http.Application` hands out JWTs (HS256) from
``POST /auth``. A token names the instance **and** the component(s) it may touch,
and is signed with a secret of its own, never with the API key, so a token seen by
a client reveals nothing that lets anyone mint more tokens or call ``/auth``.

The token secret is, in order: ``jwt_secret=``, ``MOTION_JWT_SECRET``, or one
generated once per Redis deployment and kept there (``SET NX`` of 48 random
bytes at :data:`motion.floor.keys.HTTP_TOKEN_SECRET`), so every replica of a web server
signs and checks with the same secret and a restart does not log users out.
Whoever can read that Redis key can mint tokens: set ``MOTION_JWT_SECRET`` when
Redis readers are less trusted than the web servers.

Uses the floor only (keys, connection, errors).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from motion.floor import keys as K
from motion.floor.connection import all_urls, client_for, translate_errors
from motion.floor.errors import ConfigurationError

#: shortest API key, token secret or dashboard key accepted, in bytes (UTF-8)
MIN_SECRET_BYTES = 32
#: token lifetimes: the default and the most ``POST /auth`` may grant
DEFAULT_EXPIRY_DAYS = 1.0
MAX_EXPIRY_DAYS = 30.0
#: how long a process trusts its copy of the token secret kept in Redis
_SECRET_REFRESH_SECONDS = 60.0
_ALGORITHM = "HS256"
_ISSUER = "motion"


def check_secret(value: str, what: str) -> str:
    """``value`` if it is a usable secret (at least 32 bytes); else :class:`ConfigurationError`.

    A short key can be guessed, and a token secret can be recovered offline from
    any token it signed; both must be long random strings.
    """
    if not isinstance(value, str):
        raise ConfigurationError(f"{what} must be a string, got {type(value).__name__}.")
    if len(value.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(
            f"{what} is {len(value.encode())} bytes; use at least {MIN_SECRET_BYTES} random "
            f'bytes, e.g. python -c "import secrets; print(secrets.token_urlsafe(32))".'
        )
    return value


def check_expiry(days: Any) -> float:
    """``days`` as a token lifetime: a number above 0 and at most :data:`MAX_EXPIRY_DAYS`."""
    if isinstance(days, bool) or not isinstance(days, (int, float)):
        raise ConfigurationError(f"token_expiration_days must be a number, got {days!r}.")
    value = float(days)
    if not math.isfinite(value) or value <= 0 or value > MAX_EXPIRY_DAYS:
        raise ConfigurationError(
            f"token_expiration_days={days!r}: give a number of days above 0 and at most "
            f"{MAX_EXPIRY_DAYS:g}."
        )
    return value


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, in time independent of where they differ
    and of their lengths (both are hashed first)."""
    left = hashlib.sha256(given.encode(errors="surrogateescape")).digest()
    right = hashlib.sha256(expected.encode()).digest()
    return hmac.compare_digest(left, right)


def shared_secret() -> str:
    """The token secret kept in Redis, created (``SET NX``) by whoever asks first."""
    client = client_for(all_urls()[0])  # with shards: the first one, as every replica lists
    fresh = secrets.token_urlsafe(48)
    with translate_errors("reading the HTTP token secret"):
        client.set(K.HTTP_TOKEN_SECRET, fresh, nx=True)
        stored = client.get(K.HTTP_TOKEN_SECRET)
    if stored is None:  # deleted between the two calls: ours is as good as any
        return fresh
    return stored.decode() if isinstance(stored, bytes) else str(stored)


@dataclass(frozen=True)
class Grant:
    """What a valid token allows: one instance id, of these components."""

    instance_id: str
    components: tuple[str, ...]

    def allows(self, component: str, instance_id: str) -> bool:
        """Whether the token may act on ``instance_id`` of ``component``."""
        return instance_id == self.instance_id and component in self.components


class TokenSigner:
    """Signs and checks the tokens of one Application.

    Args:
        secret: the token secret; ``""`` reads ``MOTION_JWT_SECRET``, else the one
            kept in Redis (created on first use).

    Raises:
        ConfigurationError: a given secret shorter than 32 bytes.
    """

    def __init__(self, secret: str = "") -> None:
        from_env = os.environ.get("MOTION_JWT_SECRET", "")
        if secret:
            self._fixed: str | None = check_secret(secret, "jwt_secret")
        elif from_env:
            self._fixed = check_secret(from_env, "MOTION_JWT_SECRET")
        else:
            self._fixed = None
        self._cached = ""
        self._fetched = -math.inf
        self._lock = threading.Lock()

    @property
    def shared(self) -> bool:
        """Whether the secret comes from Redis (none was configured)."""
        return self._fixed is None

    def secret(self, refresh: bool = False) -> str:
        """The current secret (re-read from Redis at most every minute, or on ``refresh``)."""
        if self._fixed is not None:
            return self._fixed
        with self._lock:
            age = time.monotonic() - self._fetched
            if not self._cached or age > _SECRET_REFRESH_SECONDS or (refresh and age > 1.0):
                self._cached = shared_secret()
                self._fetched = time.monotonic()
            return self._cached

    def make(
        self, instance_id: str, components: Sequence[str], days: float = DEFAULT_EXPIRY_DAYS
    ) -> str:
        """A token for ``instance_id`` of ``components``, valid ``days`` days (at most 30)."""
        import jwt

        lifetime = check_expiry(days)
        now = datetime.now(timezone.utc)
        claims = {
            "iss": _ISSUER,
            "sub": instance_id,
            "instance_id": instance_id,  # Motion's claim name, kept for its clients
            "components": list(components),
            "iat": now,
            "exp": now + timedelta(days=lifetime),
        }
        return str(jwt.encode(claims, self.secret(), _ALGORITHM))

    def check(self, token: str) -> Grant | None:
        """What ``token`` allows, or ``None`` (forged, expired, malformed, or too long-lived)."""
        import jwt

        options: Any = {"require": ["exp", "iat", "sub", "components"]}
        for refresh in (False, True):
            try:
                claims = jwt.decode(
                    token, self.secret(refresh), [_ALGORITHM], issuer=_ISSUER, options=options
                )
            except jwt.InvalidSignatureError:
                if self.shared and not refresh:  # another replica may have a newer secret
                    continue
                return None
            except jwt.InvalidTokenError:
                return None
            return _grant(claims)
        return None


def _grant(claims: dict[str, Any]) -> Grant | None:
    instance_id, components = claims.get("sub"), claims.get("components")
    lifetime = float(claims["exp"]) - float(claims["iat"])
    if lifetime > MAX_EXPIRY_DAYS * 86400 + 60:  # never granted by this code
        return None
    if not isinstance(instance_id, str) or not isinstance(components, list):
        return None
    if not all(isinstance(c, str) for c in components):
        return None
    return Grant(instance_id, tuple(components))
