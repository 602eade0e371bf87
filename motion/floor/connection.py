"""Redis clients: pooled synchronous clients per process, asyncio clients per loop.

The URL comes from the settings (``MOTION_REDIS_URL`` or Motion's variables); with
none, from the embedded server (:mod:`motion.floor.embedded`). With
``MOTION_REDIS_SHARDS``, a caller spreads instances over several Redis
deployments: an instance lives on the shard chosen by a stable hash of its name
(:func:`shard_url`), and every per-instance call passes the instance name so it
reaches that shard. Handles never open connections of their own: they borrow
from these pools, so creating one per request costs nothing. Connection problems
surface as :class:`~motion.errors.ConnectionFailedError` naming the (redacted) URL.

With ``MOTION_REDIS_URL=redis+cluster://host:port[,host:port...]`` the clients are
redis-py's cluster clients (``RedisCluster`` and its asyncio twin): they route each
command and script by its first key's slot and follow ``MOVED`` and ``ASK`` replies;
the global indexes are split per slot (:func:`motion.floor.keys.part`).

Every client has a socket and a connect timeout and the retry budget of
:mod:`motion.floor.budget`, so no call blocks on a hung Redis. A handle's
``redis_socket_timeout`` gets a pool of its own (one per distinct value). asyncio
clients belong to their event loop and are closed when the loop shuts down.

Layer: floor (settings, errors, budget).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import zlib
from collections.abc import AsyncGenerator, Iterator
from typing import Any

import redis
import redis.asyncio

from motion.floor.budget import AsyncBudgetRetry, BudgetRetry
from motion.floor.errors import ConfigurationError, ConnectionFailedError
from motion.floor.settings import get_settings, redact
from motion.floor.urls import cluster_nodes, is_cluster_url, single_node_url

_lock = threading.Lock()
_url: str | None = None
_sync: dict[tuple[str, float | None], redis.Redis] = {}
#: per event loop: its clients (by URL and socket timeout) and the generator closing them
_async: dict[asyncio.AbstractEventLoop, tuple[dict[Any, Any], Any]] = {}


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
                    from motion.floor.embedded import ensure_server

                    _url = ensure_server(settings.home)
                    _announce_embedded(_url, settings.home)
    return _url


def _announce_embedded(url: str, home: Any) -> None:
    """Say once, on stderr, that motion runs its own server, and how to use a real one."""
    sys.stderr.write(
        f"motion: no Redis is configured (MOTION_REDIS_URL, MOTION_REDIS_HOST/PORT or "
        f".motionrc.yml), so motion runs its own local server at {url} with its data "
        f"under {home} (Motion's default was localhost:6379). To use a real Redis: export "
        f"MOTION_REDIS_URL=redis://host:6379/0 (or MOTION_REDIS_HOST/MOTION_REDIS_PORT).\n"
    )


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


def socket_timeout_option(value: Any) -> float | None:
    """Check Motion's ``redis_socket_timeout=`` handle option (``None``: the setting)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigurationError(
            f"redis_socket_timeout={value!r}: give the seconds a Redis call of this handle "
            f"may wait, a number greater than 0 (default MOTION_REDIS_SOCKET_TIMEOUT)."
        )
    return float(value)


def client_options(socket_timeout: float | None = None) -> dict[str, Any]:
    """Options shared by every client motion makes: timeouts, keepalive, health checks.

    ``socket_timeout`` (a handle's ``redis_socket_timeout``) replaces
    ``MOTION_REDIS_SOCKET_TIMEOUT``; options in the URL win over both.
    """
    settings = get_settings()
    return {
        "socket_keepalive": True,
        "socket_timeout": socket_timeout or settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "health_check_interval": 30,
    }


def _attempt_seconds(options: dict[str, Any]) -> float:
    return max(float(options["socket_timeout"]), float(options["socket_connect_timeout"]))


def get_redis(name: str | None = None, timeout: float | None = None) -> redis.Redis:
    """The synchronous client for instance ``name``'s Redis (or the process's);
    thread-safe, safe across fork. ``timeout``: a handle's socket timeout."""
    return client_for(redis_url(name), timeout)


def client_for(url: str, timeout: float | None = None) -> redis.Redis:
    """The process's synchronous client for ``url`` (made on first use), one per
    socket timeout in use."""
    client = _sync.get((url, timeout))
    if client is None:
        with _lock:
            client = _sync.get((url, timeout))
            if client is None:
                # redis-py's default pool of 100 connections fails 100 threads
                client = _sync[url, timeout] = new_client(url, timeout, max_connections=1000)
    return client


def new_client(url: str, timeout: float | None = None, **extra: Any) -> redis.Redis:
    """A new synchronous client for ``url`` with motion's timeouts and retry budget
    (for tools that keep their own, such as producers); a cluster client for a
    ``redis+cluster://`` URL."""
    options = {**client_options(timeout), **extra}
    retry = BudgetRetry(get_settings().redis_retry_seconds, _attempt_seconds(options))
    if is_cluster_url(url):
        from redis.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]  # type: ignore[no-untyped-call]
        options = {**_cluster_options(url), **options}
        options.pop("health_check_interval", None)
        cluster = RedisCluster(startup_nodes=nodes, retry=retry, **options)
        return cluster  # type: ignore[return-value]  # the same commands as redis.Redis
    return redis.Redis.from_url(url, retry=retry, **options)


def new_async_client(url: str, timeout: float | None = None, **extra: Any) -> redis.asyncio.Redis:
    """A new asyncio client for ``url`` with motion's timeouts and retry budget (the
    caller closes it); a cluster client for a ``redis+cluster://`` URL."""
    options = {**client_options(timeout), **extra}
    retry = AsyncBudgetRetry(get_settings().redis_retry_seconds, _attempt_seconds(options))
    if is_cluster_url(url):
        from redis.asyncio.cluster import ClusterNode, RedisCluster

        nodes = [ClusterNode(host, port) for host, port in cluster_nodes(url)]
        options = {**_cluster_options(url), **options}
        options.pop("health_check_interval", None)
        client: Any = RedisCluster(startup_nodes=nodes, retry=retry, **options)
    else:
        client = redis.asyncio.Redis.from_url(url, retry=retry, **options)
    client.motion_url = url  # the URL of its synchronous twin (replication.arun)
    return client  # type: ignore[no-any-return]  # a cluster client has the same commands


def _cluster_options(url: str) -> dict[str, Any]:
    """The connection options a cluster URL carries (credentials, TLS, ``?options``),
    as redis-py reads them from the URL of its first node."""
    from redis.connection import parse_url

    options: dict[str, Any] = parse_url(single_node_url(url))  # type: ignore[no-untyped-call]
    for name in ("host", "port", "db", "connection_class"):
        options.pop(name, None)
    if url.startswith("rediss"):
        options["ssl"] = True
    return options


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a cluster client."""
    return not hasattr(client, "connection_pool")


def pool_options() -> dict[str, Any]:
    """Timeouts and retry budget for a connection pool built by hand (client tracking)."""
    options = client_options()
    retry = BudgetRetry(get_settings().redis_retry_seconds, _attempt_seconds(options))
    return {**options, "retry": retry}


def get_async_redis(name: str | None = None, timeout: float | None = None) -> redis.asyncio.Redis:
    """The asyncio client of the running event loop for instance ``name``'s Redis.

    Each event loop has its own clients; they are closed when ``asyncio.run`` (or any
    runner calling ``shutdown_asyncgens``) ends the loop, and a loop closed otherwise
    is forgotten when the next loop makes its first client.
    """
    url = redis_url(name)
    loop = asyncio.get_running_loop()
    entry = _async.get(loop)
    if entry is None:
        entry = _adopt(loop)
    clients = entry[0]
    client = clients.get((url, timeout))
    if client is None:
        client = clients[url, timeout] = new_async_client(url, timeout, max_connections=1000)
    return client


def _adopt(loop: asyncio.AbstractEventLoop) -> tuple[dict[Any, Any], Any]:
    """Start keeping clients for ``loop``, closed when the loop shuts down."""
    clients: dict[Any, redis.asyncio.Redis] = {}
    closer = _close_at_shutdown(loop, clients)
    # Calling asend() registers the generator with the running loop, whose
    # shutdown_asyncgens() (asyncio.run does it) closes it: then its finally closes
    # the clients while the loop still runs. Its first step reaches the yield at once.
    with contextlib.suppress(StopIteration):
        closer.asend(None).send(None)
    _forget_closed_loops()
    entry = _async[loop] = (clients, closer)  # the entry keeps the closer alive
    return entry


def _forget_closed_loops() -> None:
    """Drop the clients of loops closed without ``shutdown_asyncgens`` (closed by hand):
    their sockets go with the garbage, and their closers finish here, not in a finalizer
    that would call into the closed loop."""
    for loop in [loop for loop in list(_async) if loop.is_closed()]:
        entry = _async.pop(loop, None)
        if entry is not None:
            with contextlib.suppress(StopIteration, RuntimeError):
                entry[1].aclose().send(None)


async def _close_at_shutdown(
    loop: asyncio.AbstractEventLoop, clients: dict[Any, redis.asyncio.Redis]
) -> AsyncGenerator[None, None]:
    try:
        yield
    finally:
        _async.pop(loop, None)
        if not loop.is_closed():
            for client in list(clients.values()):
                with contextlib.suppress(Exception):  # a dead Redis must not fail the shutdown
                    await client.aclose()
        clients.clear()


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
            f"running and reachable from here (not paused, no network partition), and is "
            f"MOTION_REDIS_URL right? Each try waits MOTION_REDIS_SOCKET_TIMEOUT, retries "
            f"stop after MOTION_REDIS_RETRY_SECONDS."
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
    _forget_closed_loops()
    _async.clear()


def queue_delete(pipe: Any, keys: list[str]) -> None:
    """Queue one ``DEL`` of ``keys`` (all in one slot) on ``pipe``: a cluster pipeline
    has no multi-key ``delete``, but sends a ``DEL`` whose keys share a slot."""
    pipe.execute_command("DEL", *keys)
