"""Redis clients: pooled synchronous clients per process, asyncio clients per loop.

The URL comes from the settings (``MOTION_REDIS_URL`` or Motion's variables); with
none, from the embedded server (:mod:`motion.embedded`). With
``MOTION_REDIS_SHARDS``, a caller spreads instances over several Redis
deployments: an instance lives on the shard chosen by a stable hash of its name
(:func:`shard_url`), and every per-instance call passes the instance name so it
reaches that shard. Handles never open connections of their own: they borrow
from these pools, so creating one per request costs nothing. Connection problems
surface as :class:`~motion.errors.ConnectionFailedError` naming the (redacted) URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
import zlib
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from motion.errors import ConfigurationError, ConnectionFailedError
from motion.settings import get_settings, redact

_lock = threading.Lock()
_url: str | None = None
_sync: dict[str, redis.Redis] = {}
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, redis.asyncio.Redis]] = (
    weakref.WeakKeyDictionary()
)


def redis_url(name: str | None = None) -> str:
    """The Redis URL of instance ``name`` (its shard), or the process's Redis URL.

    With no URL configured this starts the embedded server.
    """
    shards = get_settings().redis_shards
    if shards and name is not None:
        return shard_url(name, shards)
    global _url
    if _url is None:
        with _lock:
            if _url is None:
                settings = get_settings()
                if settings.redis_url:
                    _url = settings.redis_url
                elif shards:
                    raise ConfigurationError(
                        "with MOTION_REDIS_SHARDS set, this call needs an instance name (or "
                        "set MOTION_REDIS_URL to one shard, as its workers do)."
                    )
                else:
                    from motion.embedded import ensure_server

                    _url = ensure_server(settings.home)
    return _url


def shard_url(name: str, shards: tuple[str, ...]) -> str:
    """The shard of instance ``name``: a stable hash of ``Comp__id`` over the shard list.

    Every producer, HTTP process and admin tool must list the shards in the same
    order; each shard's workers point ``MOTION_REDIS_URL`` at their shard.
    """
    return shards[zlib.crc32(name.encode()) % len(shards)]


def all_urls() -> list[str]:
    """Every Redis this process may read instances from (each shard, or the one URL)."""
    shards = get_settings().redis_shards
    return list(shards) if shards else [redis_url()]


def is_embedded() -> bool:
    """True when no Redis URL is configured (motion runs its own local server)."""
    settings = get_settings()
    return not settings.redis_url and not settings.redis_shards


def client_options() -> dict[str, Any]:
    """Options shared by every client motion makes: keepalive, retries, health checks."""
    return {
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
    }


def get_redis(name: str | None = None) -> redis.Redis:
    """The synchronous client for instance ``name``'s Redis (or the process's);
    thread-safe, safe across fork."""
    return client_for(redis_url(name))


def client_for(url: str) -> redis.Redis:
    """The process's synchronous client for ``url`` (made on first use)."""
    client = _sync.get(url)
    if client is None:
        with _lock:
            client = _sync.get(url)
            if client is None:
                client = _sync[url] = redis.Redis.from_url(
                    url,
                    retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                    max_connections=1000,  # redis-py's default of 100 fails 100 threads
                    **client_options(),
                )
    return client


def get_async_redis(name: str | None = None) -> redis.asyncio.Redis:
    """The asyncio client of the running event loop for instance ``name``'s Redis."""
    url = redis_url(name)
    clients = _async.setdefault(asyncio.get_running_loop(), {})
    client = clients.get(url)
    if client is None:
        from redis.asyncio.retry import Retry as AsyncRetry

        client = clients[url] = redis.asyncio.Redis.from_url(
            url,
            retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            max_connections=1000,
            **client_options(),
        )
    return client


class _Lane(threading.local):
    """This thread's own connections for :func:`fast_command`, one per pool."""

    def __init__(self) -> None:
        # keyed by the pool itself (weakly): a pool dropped by reset() takes its
        # connection along, and a new pool never inherits another's by a reused id
        self.conns: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
        self.pid = os.getpid()


_lane = _Lane()


def fast_command(client: redis.Redis, *args: Any) -> Any:
    """Run one command on a connection of this thread's own; the raw reply.

    For the caller's hot path (the version check before a serve, the enqueue):
    redis-py's per-command layers (pool checkout, retry wrapper, event hooks)
    cost about as much as a loopback round trip, so these commands skip them.
    On a connection error the command is sent again through ``client``, which
    retries (a re-sent enqueue is recognized by its token). Use it only for
    commands whose reply needs no parsing callback.
    """
    pool = client.connection_pool
    if _lane.pid != os.getpid():  # forked: the parent's sockets are not ours
        _lane.conns, _lane.pid = weakref.WeakKeyDictionary(), os.getpid()
    conn = _lane.conns.get(pool)
    if conn is None:
        conn = _lane.conns[pool] = pool.connection_class(**pool.connection_kwargs)
    try:
        conn.send_command(*args)
        return conn.read_response()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        conn.disconnect()
        return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py untyped here


@contextlib.contextmanager
def translate_errors(action: str, name: str | None = None) -> Iterator[None]:
    """Turn redis-py connection and auth errors into :class:`ConnectionFailedError`
    (naming the Redis of instance ``name``, if given)."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"{action}: Redis at {redact(redis_url(name))} refused the credentials ({exc}); "
            f"check the user and password in MOTION_REDIS_URL."
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ConnectionFailedError(
            f"{action}: cannot reach Redis at {redact(redis_url(name))} ({exc}); is it "
            f"running, and is MOTION_REDIS_URL right?"
        ) from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "NOPERM" in str(exc):
            raise ConnectionFailedError(
                f"{action}: Redis at {redact(redis_url(name))} refused the command ({exc}); "
                f"check the credentials and ACL permissions."
            ) from exc
        raise


def reset() -> None:
    """Drop cached clients and URL (after :func:`motion.configure`, in tests, after fork)."""
    global _url
    with _lock:
        for client in _sync.values():
            client.close()
        _url = None
        _sync.clear()
        _async.clear()
