"""Redis clients: one pooled synchronous client per process, one asyncio client per loop.

The URL comes from the settings (``MOTION_REDIS_URL`` or Motion's variables); with
none, from the embedded server (:mod:`motion.embedded`). Handles never open
connections of their own: they borrow from these pools, so creating one per
request costs nothing. Connection problems surface as
:class:`~motion.errors.ConnectionFailedError` naming the (redacted) URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from motion.errors import ConnectionFailedError
from motion.settings import get_settings, redact

_lock = threading.Lock()
_url: str | None = None
_sync: redis.Redis | None = None
_async: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, redis.asyncio.Redis] = (
    weakref.WeakKeyDictionary()
)


def redis_url() -> str:
    """The Redis URL in force, starting the embedded server if none is configured."""
    global _url
    if _url is None:
        with _lock:
            if _url is None:
                settings = get_settings()
                if settings.redis_url:
                    _url = settings.redis_url
                else:
                    from motion.embedded import ensure_server

                    _url = ensure_server(settings.home)
    return _url


def is_embedded() -> bool:
    """True when no Redis URL is configured (motion runs its own local server)."""
    return not get_settings().redis_url


def client_options() -> dict[str, Any]:
    """Options shared by every client motion makes: keepalive, retries, health checks."""
    return {
        "socket_keepalive": True,
        "socket_connect_timeout": 5,
        "health_check_interval": 30,
    }


def get_redis() -> redis.Redis:
    """The process's synchronous client (thread-safe; safe across fork)."""
    global _sync
    if _sync is None:
        url = redis_url()
        with _lock:
            if _sync is None:
                _sync = redis.Redis.from_url(
                    url,
                    retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), 3),
                    **client_options(),
                )
    return _sync


def get_async_redis() -> redis.asyncio.Redis:
    """The asyncio client of the running event loop (one pool per loop)."""
    loop = asyncio.get_running_loop()
    client = _async.get(loop)
    if client is None:
        from redis.asyncio.retry import Retry as AsyncRetry

        client = redis.asyncio.Redis.from_url(
            redis_url(),
            retry=AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 3),
            max_connections=1000,
            **client_options(),
        )
        _async[loop] = client
    return client


class _Lane(threading.local):
    """This thread's own connection for :func:`fast_hget` (and whose pool it copies)."""

    conn: Any = None
    pool: Any = None
    pid: int = 0


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
    if _lane.conn is None or _lane.pool is not pool or _lane.pid != os.getpid():
        _lane.conn = pool.connection_class(**pool.connection_kwargs)
        _lane.pool, _lane.pid = pool, os.getpid()
    conn = _lane.conn
    try:
        conn.send_command(*args)
        return conn.read_response()
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        conn.disconnect()
        return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py untyped here


@contextlib.contextmanager
def translate_errors(action: str) -> Iterator[None]:
    """Turn redis-py connection and auth errors into :class:`ConnectionFailedError`."""
    try:
        yield
    except redis.AuthenticationError as exc:
        raise ConnectionFailedError(
            f"{action}: Redis at {redact(redis_url())} refused the credentials ({exc}); "
            f"check the user and password in MOTION_REDIS_URL."
        ) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise ConnectionFailedError(
            f"{action}: cannot reach Redis at {redact(redis_url())} ({exc}); is it running, "
            f"and is MOTION_REDIS_URL right?"
        ) from exc
    except redis.ResponseError as exc:
        if "NOAUTH" in str(exc) or "NOPERM" in str(exc):
            raise ConnectionFailedError(
                f"{action}: Redis at {redact(redis_url())} refused the command ({exc}); "
                f"check the credentials and ACL permissions."
            ) from exc
        raise


def reset() -> None:
    """Drop cached clients and URL (after :func:`motion.configure`, in tests, after fork)."""
    global _url, _sync
    with _lock:
        if _sync is not None:
            _sync.close()
        _url, _sync = None, None
        _async.clear()
