"""Configuration: environment variables and their defaults (Motion's ``RedisParams`` is in
:mod:`motion.floor.redis_params`).

Every knob has one environment variable; :func:`configure` overrides them in code.
Motion's ``.motionrc.yml`` (:mod:`motion.floor.motionrc`) is loaded into the environment
before the variables are read.

Where the Redis URL comes from (the one place this rule is written; docs/api.md
repeats it): ``MOTION_REDIS_URL`` if set; else a URL built from Motion's
``MOTION_REDIS_HOST/PORT/DB/PASSWORD/SSL`` (from the environment or from
``.motionrc.yml``, whose values overwrite the environment, as in Motion); else
the embedded server. Who applies updates follows from it: with Motion's
variables or the embedded server, an in-process worker does (a Motion program
needs no worker process); with ``MOTION_REDIS_URL``, separate workers do, unless
``MOTION_INPROCESS_WORKER=1``.

====================================  =========  ============================================
variable                              default    meaning
====================================  =========  ============================================
``MOTION_REDIS_URL``                  (unset)    ``redis://`` / ``rediss://`` URL; wins when set
``MOTION_REDIS_HOST/PORT/DB``         (unset)    Motion's variables, used when no URL is set
``MOTION_REDIS_PASSWORD/SSL``         (unset)    ditto
``MOTION_REDIS_SHARDS``               (unset)    callers: several Redis URLs; each instance lives
                                                 on one, chosen by a hash of its name (workers
                                                 of a shard set ``MOTION_REDIS_URL`` to it)
``MOTION_REDIS_SOCKET_TIMEOUT``       ``5``      seconds a Redis read or write may take before
                                                 the try fails (a URL's ``?socket_timeout=``
                                                 wins; a handle's ``redis_socket_timeout=``
                                                 applies to that handle's calls)
``MOTION_REDIS_CONNECT_TIMEOUT``      ``5``      seconds a connection attempt may take
``MOTION_REDIS_RETRY_SECONDS``        ``20``     retry budget: a failing call retries (at most 3
                                                 times) only while the next try can end within
                                                 this long of the first, so it fails within
                                                 max(20 s, one timeout) with the defaults
``MOTION_BROKER_URL``                 state URL  Celery broker, if not the same Redis
``MOTION_INPROCESS_WORKER``           auto       ``1``/``0``; auto: on for the embedded server and
                                                 for Motion's configuration (``MOTION_REDIS_HOST``
                                                 ... or ``.motionrc.yml``), off with a URL
``MOTION_INPROCESS_CONCURRENCY``      ``8``      threads of the in-process worker
``MOTION_QUEUES``                     ``4``      wake-up queues per component: ``motion.<C>.0..N-1``
``MOTION_LEASE_SECONDS``              ``30``     lease period; a crashed worker costs this long
``MOTION_SWEEP_SECONDS``              ``10``     how often the sweeper looks for stuck instances
``MOTION_UPDATE_RETRIES``             ``0``      extra tries of a failing update op
``MOTION_MAX_VALUE_BYTES``            64 MiB     largest serialized state value or payload
``MOTION_MAX_PENDING``                ``100000`` most inbox entries while a flow is held
                                                 (paused): then an enqueue raises
``MOTION_SIGNING_KEY``                (unset)    HMAC key: inbox payloads, state values and
                                                 cached serve results are signed and checked
``MOTION_HOME``                       ``.motion``  folder of the embedded server's data
``MOTION_CLIENT_TRACKING``            ``0``      ``1``: serve unchanged state with no round trip
                                                 (Redis client tracking invalidates copies)
``MOTION_WAKEUP_PER_UPDATE``          ``0``      ``1``: a wake-up task for every update (each
                                                 its own task in Flower), not one per burst
``MOTION_WORKER_GRACE_SECONDS``       ``30``     a wait with no timeout fails (``NoWorkerError``)
                                                 once no worker able to apply the component's
                                                 updates has been seen for this long
``MOTION_HEARTBEAT_SECONDS``          ``5``      how often workers announce themselves
``MOTION_ENV``                        ``prod``   ``dev``: Motion's dev mode; handles work on
                                                 copy-on-write dev instances, deleted at exit
====================================  =========  ============================================

Floor; uses the floor (errors, motionrc, redis_params).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields, replace
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from motion.floor import motionrc
from motion.floor.errors import ConfigurationError
from motion.floor.redis_params import RedisParams, env_bool, motion_configured


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


def url_from_environment() -> str | None:
    """``MOTION_REDIS_URL``, else a URL from Motion's variables, else ``None`` (embedded)."""
    url = os.environ.get("MOTION_REDIS_URL", "").strip()
    if url:
        return check_url(url, "MOTION_REDIS_URL")
    if motion_configured():
        return RedisParams().url()
    return None


def check_url(url: str, name: str, broker: bool = False) -> str:
    """``url`` if it is a usable Redis URL; else :class:`ConfigurationError` naming ``name``.

    Messages show the URL with its password redacted. A ``broker`` URL may carry
    options of Celery's transport too, so only the values redis-py reads are checked.
    """
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigurationError(
            f"{name} must start with redis://, rediss:// or unix:// (got {redact(url)!r})."
        )
    creds = url.partition("://")[2].rpartition("@")[0]
    if any(c in creds for c in "?#/@"):
        raise ConfigurationError(
            f"{name}={redact(url)!r}: the user or password holds a character that a URL "
            f"reserves (?, #, / or @); percent-encode it (? as %3F, # as %23, / as %2F, "
            f"@ as %40), as in redis://:pa%3Fss@host:6379/0."
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
    _check_options(url, name, broker)
    return url


def _check_options(url: str, name: str, broker: bool) -> None:
    """Check the URL's ``?option=value`` pairs as redis-py will read them."""
    from redis.connection import parse_url  # the floor stays light to import

    try:
        options = parse_url(url)  # type: ignore[no-untyped-call]  # untyped in redis-py
    except ValueError as exc:  # "Invalid value for 'socket_timeout' in connection URL."
        raise ConfigurationError(
            f"{name}={redact(url)!r}: {exc} Give it a number of seconds (or a count), as "
            f"in ?socket_timeout=5."
        ) from None
    unknown = sorted(set(options) - _url_options())
    if unknown and not broker:
        raise ConfigurationError(
            f"{name}={redact(url)!r}: unknown URL option(s) {', '.join(unknown)}; redis-py "
            f"knows e.g. socket_timeout, socket_connect_timeout, health_check_interval, "
            f"protocol, ssl_cert_reqs."
        )


@cache
def _url_options() -> frozenset[str]:
    import inspect

    import redis.connection as rc

    names = set(rc.URL_QUERY_ARGUMENT_PARSERS) | {"host", "port", "path", "connection_class"}
    for cls in (rc.AbstractConnection, rc.Connection, rc.SSLConnection):
        names.update(inspect.signature(cls.__init__).parameters)
    names.update(inspect.signature(rc.UnixDomainSocketConnection.__init__).parameters)
    names.update(inspect.signature(rc.ConnectionPool.__init__).parameters)
    return frozenset(names - {"self", "kwargs", "connection_kwargs"})


def redact(url: str) -> str:
    """The URL with any password replaced by ``***`` (for messages and logs).

    The credentials end at the *last* ``@``, so a password holding ``?``, ``#`` or
    ``/`` (not percent-encoded) is hidden whole.
    """
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    creds, at, rest = rest.rpartition("@")
    rest, qsep, query = rest.partition("?")
    if qsep:  # redis-py also takes ?password=...
        query = "&".join(
            f"{k}=***" if k.lower() == "password" else f"{k}={v}" if e else k
            for k, e, v in (pair.partition("=") for pair in query.split("&"))
        )
    if at:
        user = creds.split(":", 1)[0] if ":" in creds else ""
        rest = f"{user}:***@{rest}" if ":" in creds else f"***@{rest}"
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
        return check_url(url, "MOTION_BROKER_URL", broker=True)
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
    #: the Redis URL was built from Motion's variables (``MOTION_REDIS_HOST``...)
    motion_config: bool = False
    worker_grace_seconds: float = 30.0
    heartbeat_seconds: float = 5.0
    redis_socket_timeout: float = 5.0
    redis_connect_timeout: float = 5.0
    redis_retry_seconds: float = 20.0
    dev_mode: bool = False
    #: most bytes of inbox payloads a drain holds at once (one window), and so the
    #: most one call of a batch op receives (at least one update always comes)
    batch_bytes: int = 16 * 1024 * 1024
    #: most updates an instance with a paused flow holds (inbox entries) before an
    #: enqueue raises TooManyPendingError
    max_pending: int = 100_000

    @classmethod
    def from_environment(cls) -> Settings:
        """Read ``.motionrc.yml`` (once per process), then every ``MOTION_*`` variable."""
        motionrc.import_config()
        key = os.environ.get("MOTION_SIGNING_KEY")
        return cls(
            redis_url=url_from_environment(),
            broker_url=_broker_url(),
            inprocess_worker=env_bool("MOTION_INPROCESS_WORKER"),
            inprocess_concurrency=_env_number("MOTION_INPROCESS_CONCURRENCY", 8, int),
            queues=_env_number("MOTION_QUEUES", 4, int),
            lease_seconds=_env_number("MOTION_LEASE_SECONDS", 30.0),
            sweep_seconds=_env_number("MOTION_SWEEP_SECONDS", 10.0),
            update_retries=_env_number("MOTION_UPDATE_RETRIES", 0, int),
            max_value_bytes=_env_number("MOTION_MAX_VALUE_BYTES", 64 * 1024 * 1024, int),
            signing_key=key.encode() if key else None,
            home=Path(os.environ.get("MOTION_HOME", ".motion")).resolve(),
            client_tracking=bool(env_bool("MOTION_CLIENT_TRACKING")),
            wakeup_per_update=bool(env_bool("MOTION_WAKEUP_PER_UPDATE")),
            redis_shards=_shards(),
            motion_config=motion_configured(),
            worker_grace_seconds=_env_number("MOTION_WORKER_GRACE_SECONDS", 30.0),
            heartbeat_seconds=_env_number("MOTION_HEARTBEAT_SECONDS", 5.0),
            redis_socket_timeout=_env_number("MOTION_REDIS_SOCKET_TIMEOUT", 5.0),
            redis_connect_timeout=_env_number("MOTION_REDIS_CONNECT_TIMEOUT", 5.0),
            redis_retry_seconds=_env_number("MOTION_REDIS_RETRY_SECONDS", 20.0),
            dev_mode=os.environ.get("MOTION_ENV", "prod").strip().lower() == "dev",
            batch_bytes=max(1, _env_number("MOTION_BATCH_BYTES", 16 * 1024 * 1024, int)),
            max_pending=max(1, _env_number("MOTION_MAX_PENDING", 100_000, int)),
        )


_lock = threading.Lock()
_current: Settings | None = None
_overridden = False


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
    global _current, _overridden
    names = {f.name for f in fields(Settings)}
    unknown = set(overrides) - names
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {sorted(unknown)}; known: {sorted(names)}")
    if isinstance(overrides.get("signing_key"), str):
        overrides["signing_key"] = overrides["signing_key"].encode()
    if isinstance(overrides.get("redis_url"), str):
        overrides["redis_url"] = check_url(overrides["redis_url"], "redis_url")
    for name in ("redis_socket_timeout", "redis_connect_timeout", "redis_retry_seconds"):
        value = overrides.get(name)
        if value is not None and not (isinstance(value, int | float) and value > 0):
            raise ConfigurationError(f"{name}={value!r}: give a number of seconds > 0.")
    if "redis_shards" in overrides:
        shards = overrides["redis_shards"] or ()
        overrides["redis_shards"] = tuple(check_url(u, "redis_shards") for u in shards)
    with _lock:
        _current = replace(_current or Settings.from_environment(), **overrides)
        _overridden = True
    return _current


def load_config_file(config_path: str | os.PathLike[str]) -> None:
    """Load Motion's ``.motionrc.yml`` at ``config_path`` (a handle's ``config_path=``)
    unless this process already loaded one; settings read before are re-read."""
    global _current
    if motionrc.import_config(config_path):
        with _lock:
            if not _overridden:
                _current = None


def reset() -> None:
    """Forget overrides and re-read the environment on next use (for tests)."""
    global _current, _overridden
    with _lock:
        _current = None
        _overridden = False
