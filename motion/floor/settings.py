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
``MOTION_REDIS_URL``                  (unset)    ``redis://`` / ``rediss://`` URL; wins when set;
                                                 ``redis+cluster://h:p[,h:p...]`` (or
                                                 ``rediss+cluster://``): a Redis Cluster (then
                                                 ``MOTION_BROKER_URL`` must name the broker)
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
``MOTION_REDIS_MIN_REPLICAS``        ``0``      acknowledge an enqueue or a commit only once
                                                 this many replicas have it (``WAIT``, or
                                                 ``WAITAOF`` where the server has it)
``MOTION_REDIS_REPLICA_TIMEOUT``      ``2``      seconds to wait for them, then
                                                 ``ReplicationTimeoutError``
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

Floor; uses the floor (errors, motionrc, redis_params, urls).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from motion.floor import motionrc
from motion.floor.errors import ConfigurationError
from motion.floor.redis_params import RedisParams, env_bool, motion_configured
from motion.floor.urls import check_url, is_cluster_url, redact

__all__ = ["Settings", "check_url", "configure", "get_settings", "redact", "reset"]


def _env_number(name: str, default: float, kind: type = float) -> Any:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: expected a {kind.__name__}.") from None
    if value <= 0 and name not in ("MOTION_UPDATE_RETRIES", "MOTION_LINGER_MS"):
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
    if is_cluster_url(url):
        raise ConfigurationError(
            f"MOTION_BROKER_URL={redact(url)!r}: the Celery broker cannot be a Redis Cluster "
            f"(kombu has no cluster transport); give a single Redis (redis://host:6379/1) "
            f"or RabbitMQ (amqp://user:password@host:5672//)."
        )
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
    #: how long a drain of a hot instance keeps its lease after its inbox emptied, for
    #: the next update to be handed to it directly (no broker hop); 0: never lingers
    linger_ms: int = 20
    #: most updates an instance with a paused flow holds (inbox entries) before an
    #: enqueue raises TooManyPendingError
    max_pending: int = 100_000
    #: replicas that must have an enqueue or a commit before it is acknowledged
    redis_min_replicas: int = 0
    #: seconds to wait for them (then ``ReplicationTimeoutError``)
    redis_replica_timeout: float = 2.0

    @property
    def redis_cluster(self) -> bool:
        """Whether the state lives on a Redis Cluster (a ``redis+cluster://`` URL)."""
        return is_cluster_url(self.redis_url)

    @classmethod
    def from_environment(cls) -> Settings:
        """Read ``.motionrc.yml`` (once per process), then every ``MOTION_*`` variable."""
        motionrc.import_config()
        key = os.environ.get("MOTION_SIGNING_KEY")
        redis_url, broker_url = url_from_environment(), _broker_url()
        _check_cluster(redis_url, broker_url)
        return cls(
            redis_url=redis_url,
            broker_url=broker_url,
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
            linger_ms=_env_number("MOTION_LINGER_MS", 20, int),
            max_pending=max(1, _env_number("MOTION_MAX_PENDING", 100_000, int)),
            redis_min_replicas=_min_replicas(),
            redis_replica_timeout=_env_number("MOTION_REDIS_REPLICA_TIMEOUT", 2.0),
        )


def _min_replicas() -> int:
    raw = os.environ.get("MOTION_REDIS_MIN_REPLICAS", "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise ConfigurationError(
            f"MOTION_REDIS_MIN_REPLICAS={raw!r}: give how many replicas must have a write "
            f"before it is acknowledged, a whole number (0: do not wait; 1 is usual)."
        )
    return int(raw)


def _check_cluster(redis_url: str | None, broker_url: str | None) -> None:
    """A cluster holds the state only: the broker must be named, and no shards."""
    if not is_cluster_url(redis_url):
        return
    if not broker_url:
        raise ConfigurationError(
            f"MOTION_REDIS_URL={redact(str(redis_url))!r} is a Redis Cluster, which cannot "
            f"be the Celery broker (kombu has no cluster transport): set MOTION_BROKER_URL "
            f"to a single Redis (redis://host:6379/1) or to RabbitMQ (amqp://...)."
        )
    if os.environ.get("MOTION_REDIS_SHARDS", "").strip():
        raise ConfigurationError(
            "MOTION_REDIS_SHARDS cannot be combined with a Redis Cluster URL: a cluster "
            "spreads instances itself; unset MOTION_REDIS_SHARDS (`motion copy` moves "
            "each shard into the cluster)."
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
    if "redis_url" in overrides or "broker_url" in overrides:
        base = _current or Settings.from_environment()
        _check_cluster(
            overrides.get("redis_url", base.redis_url), overrides.get("broker_url", base.broker_url)
        )
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
