"""Configuration: environment variables, their defaults, and Motion's ``RedisParams``.

Every knob has one environment variable; :func:`configure` overrides them in code.

====================================  =========  ============================================
variable                              default    meaning
====================================  =========  ============================================
``MOTION_REDIS_URL``                  (unset)    ``redis://`` / ``rediss://`` URL; wins when set
``MOTION_REDIS_HOST/PORT/DB``         (unset)    Motion's variables, used when no URL is set
``MOTION_REDIS_PASSWORD/SSL``         (unset)    ditto
``MOTION_REDIS_SHARDS``               (unset)    callers: several Redis URLs; each instance lives
                                                 on one, chosen by a hash of its name (workers
                                                 of a shard set ``MOTION_REDIS_URL`` to it)
``MOTION_BROKER_URL``                 state URL  Celery broker, if not the same Redis
``MOTION_INPROCESS_WORKER``           auto       ``1``/``0``; auto = on only for the embedded server
``MOTION_INPROCESS_CONCURRENCY``      ``8``      threads of the in-process worker
``MOTION_QUEUES``                     ``4``      wake-up queues per component: ``motion.<C>.0..N-1``
``MOTION_LEASE_SECONDS``              ``30``     lease period; a crashed worker costs this long
``MOTION_SWEEP_SECONDS``              ``10``     how often the sweeper looks for stuck instances
``MOTION_UPDATE_RETRIES``             ``0``      extra tries of a failing update op
``MOTION_MAX_VALUE_BYTES``            64 MiB     largest serialized state value or payload
``MOTION_SIGNING_KEY``                (unset)    HMAC key: inbox payloads, state values and
                                                 cached serve results are signed and checked
``MOTION_HOME``                       ``.motion``  folder of the embedded server's data
``MOTION_CLIENT_TRACKING``            ``0``      ``1``: serve unchanged state with no round trip
                                                 (Redis client tracking invalidates copies)
``MOTION_WAKEUP_PER_UPDATE``          ``0``      ``1``: a wake-up task for every update (each
                                                 its own task in Flower), not one per burst
====================================  =========  ============================================
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from motion.errors import ConfigurationError


def _env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r}: use 1 or 0.")


def _env_number(name: str, default: float, kind: type = float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: expected a {kind.__name__}.") from None
    if value <= 0 and name != "MOTION_UPDATE_RETRIES":
        raise ConfigurationError(f"{name}={raw!r}: must be greater than 0.")
    if value < 0:
        raise ConfigurationError(f"{name}={raw!r}: must not be negative.")
    return value


@dataclass
class RedisParams:
    """Motion's connection parameters; ``MOTION_REDIS_*`` variables fill the defaults.

    Example::

        RedisParams(host="redis.internal", port=6380, password="s3cret", ssl=True).url()
    """

    host: str = field(default_factory=lambda: os.environ.get("MOTION_REDIS_HOST", "localhost"))
    port: int = field(default_factory=lambda: int(os.environ.get("MOTION_REDIS_PORT", "6379")))
    db: int = field(default_factory=lambda: int(os.environ.get("MOTION_REDIS_DB", "0")))
    password: str | None = field(
        default_factory=lambda: os.environ.get("MOTION_REDIS_PASSWORD") or None
    )
    ssl: bool = field(default_factory=lambda: bool(_env_bool("MOTION_REDIS_SSL")))

    def url(self) -> str:
        """The equivalent ``redis://`` or ``rediss://`` URL."""
        scheme = "rediss" if self.ssl else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"


_MOTION_REDIS_VARS = (
    "MOTION_REDIS_HOST",
    "MOTION_REDIS_PORT",
    "MOTION_REDIS_DB",
    "MOTION_REDIS_PASSWORD",
    "MOTION_REDIS_SSL",
)


def url_from_environment() -> str | None:
    """``MOTION_REDIS_URL``, else a URL from Motion's variables, else ``None`` (embedded)."""
    url = os.environ.get("MOTION_REDIS_URL", "").strip()
    if url:
        return check_url(url, "MOTION_REDIS_URL")
    if any(os.environ.get(name) for name in _MOTION_REDIS_VARS):
        return RedisParams().url()
    return None


def check_url(url: str, name: str) -> str:
    """``url`` if it is a usable Redis URL; else :class:`ConfigurationError` naming ``name``."""
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"{name} must start with redis://, rediss:// or unix:// (got {redact(url)!r})."
        )
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  # raises ValueError for a port that is not a number
    except ValueError:
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the port must be a number, as in redis://host:6379/0."
        ) from None
    db = parts.path.strip("/")
    if parts.scheme != "unix" and db and not db.isdigit():
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the database after the host must be a number, as in "
            f"redis://host:6379/0."
        )
    return url


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs)."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    rest, qsep, query = rest.partition("?")
    if qsep:  # redis-py also takes ?password=...
        query = "&".join(
            f"{k}=***" if k.lower() == "password" else f"{k}={v}" if e else k
            for k, e, v in (pair.partition("=") for pair in query.split("&"))
        )
    if "@" in rest:
        creds, _, host = rest.rpartition("@")
        user = creds.split(":", 1)[0] if ":" in creds else ""
        rest = f"{user}:***@{host}" if ":" in creds else f"***@{host}"
    return f"{scheme}://{rest}" + (f"?{query}" if qsep else "")


def _shards() -> tuple[str, ...]:
    raw = os.environ.get("MOTION_REDIS_SHARDS", "").replace(",", " ").split()
    urls = tuple(check_url(url, "MOTION_REDIS_SHARDS") for url in raw)
    if urls and os.environ.get("MOTION_BROKER_URL"):
        raise ConfigurationError(
            "MOTION_REDIS_SHARDS and MOTION_BROKER_URL cannot be combined: each shard is its "
            "own broker, so a shard's workers receive only its instances' wake-ups."
        )
    return urls


def _broker_url() -> str | None:
    url = os.environ.get("MOTION_BROKER_URL", "").strip()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return check_url(url, "MOTION_BROKER_URL")
    return url or None  # another kind of broker (amqp://...): Celery checks it


@dataclass(frozen=True)
class Settings:
    """The configuration in force; see the module docstring for each field."""

    redis_url: str | None
    broker_url: str | None
    inprocess_worker: bool | None
    inprocess_concurrency: int
    queues: int
    lease_seconds: float
    sweep_seconds: float
    update_retries: int
    max_value_bytes: int
    signing_key: bytes | None
    home: Path
    client_tracking: bool = False
    wakeup_per_update: bool = False
    redis_shards: tuple[str, ...] = ()
    #: most bytes of inbox payloads a drain holds at once (one window), and so the
    #: most one call of a batch op receives (at least one update always comes)
    batch_bytes: int = 16 * 1024 * 1024

    @classmethod
    def from_environment(cls) -> Settings:
        """Read every ``MOTION_*`` variable."""
        key = os.environ.get("MOTION_SIGNING_KEY")
        return cls(
            redis_url=url_from_environment(),
            broker_url=_broker_url(),
            inprocess_worker=_env_bool("MOTION_INPROCESS_WORKER"),
            inprocess_concurrency=_env_number("MOTION_INPROCESS_CONCURRENCY", 8, int),
            queues=_env_number("MOTION_QUEUES", 4, int),
            lease_seconds=_env_number("MOTION_LEASE_SECONDS", 30.0),
            sweep_seconds=_env_number("MOTION_SWEEP_SECONDS", 10.0),
            update_retries=_env_number("MOTION_UPDATE_RETRIES", 0, int),
            max_value_bytes=_env_number("MOTION_MAX_VALUE_BYTES", 64 * 1024 * 1024, int),
            signing_key=key.encode() if key else None,
            home=Path(os.environ.get("MOTION_HOME", ".motion")).resolve(),
            client_tracking=bool(_env_bool("MOTION_CLIENT_TRACKING")),
            wakeup_per_update=bool(_env_bool("MOTION_WAKEUP_PER_UPDATE")),
            redis_shards=_shards(),
            batch_bytes=max(1, _env_number("MOTION_BATCH_BYTES", 16 * 1024 * 1024, int)),
        )


_lock = threading.Lock()
_current: Settings | None = None


def get_settings() -> Settings:
    """The settings in force: the environment, then any :func:`configure` overrides."""
    global _current
    if _current is None:
        with _lock:
            if _current is None:
                _current = Settings.from_environment()
    return _current


def configure(**overrides: Any) -> Settings:
    """Override settings in code, e.g. ``configure(redis_url="redis://host:6379/0")``.

    Call it before the first instance is used. Unknown names raise
    :class:`ConfigurationError`.
    """
    global _current
    names = {f.name for f in fields(Settings)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    if isinstance(overrides.get("signing_key"), str):
        overrides["signing_key"] = overrides["signing_key"].encode()
    if "redis_shards" in overrides:
        shards = overrides["redis_shards"] or ()
        overrides["redis_shards"] = tuple(check_url(u, "redis_shards") for u in shards)
    with _lock:
        _current = replace(_current or Settings.from_environment(), **overrides)
    return _current


def reset() -> None:
    """Forget overrides and re-read the environment on next use (for tests)."""
    global _current
    with _lock:
        _current = None
