"""Acknowledging a write only once replicas have it (``MOTION_REDIS_MIN_REPLICAS``).

Redis replicates asynchronously: a primary that fails right after a write may be
replaced by a replica that never received it. With ``MOTION_REDIS_MIN_REPLICAS=N``
the enqueue and commit scripts are followed, on the same connection and in the same
round trip, by ``WAIT N timeout`` (or, where the server has it (Redis/Valkey >= 7.2),
``WAITAOF 0 N timeout``: the replicas have also written it to their append-only
file). Fewer than ``N`` confirmations raise :class:`ReplicationTimeoutError`: the
write is on the primary and may or may not survive a failover; a retry is safe
(an enqueue's token deduplicates it: the error's ``dedup_key`` names it, see
:func:`motion.floor.inbox.token_for`; a repeated commit is refused as a duplicate).

On a cluster the script and the wait go to the primary serving the keys' slot (a
plain client of that node, so both run on one connection); a ``MOVED`` reply reads
the topology again, an ``ASK`` reply sends ``ASKING`` first to the node named,
``TRYAGAIN`` (a slot half migrated) waits a little, all within the retry budget.

Floor; uses the floor (errors, settings, slots).
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import redis

from motion.floor import slots
from motion.floor.errors import ReplicationTimeoutError
from motion.floor.settings import get_settings

#: the scripts whose writes an acknowledgement stands for
REPLICATED = frozenset({"enqueue", "commit"})
_lock = threading.Lock()
#: per server (host, port): whether it has WAITAOF
_waitaof: dict[tuple[str, int], bool] = {}


def wanted(name: str) -> int:
    """How many replicas script ``name`` must reach before it is acknowledged (0: none)."""
    return get_settings().redis_min_replicas if name in REPLICATED else 0


def _where(client: Any) -> tuple[str, int]:
    kwargs = client.connection_pool.connection_kwargs
    return str(kwargs.get("host", "")), int(kwargs.get("port", 0) or 0)


def has_waitaof(client: redis.Redis) -> bool:
    """Whether the server behind ``client`` has ``WAITAOF`` (Redis/Valkey >= 7.2), cached."""
    where = _where(client)
    known = _waitaof.get(where)
    if known is None:
        try:
            info = client.info("server")
            version = str(info.get("valkey_version") or info.get("redis_version") or "0")
            major, minor = (int(x) for x in [*version.split("."), "0"][:2])
            # WAITAOF counts replicas that wrote the AOF: only with appendonly on
            aof = client.config_get("appendonly").get("appendonly") == "yes"
            known = (major, minor) >= (7, 2) and aof
        except redis.ResponseError:  # an ACL without INFO or CONFIG: plain WAIT
            known = False
        with _lock:
            _waitaof[where] = known
    return known


def _wait_command(client: Any, replicas: int) -> tuple[Any, ...]:
    ms = int(get_settings().redis_replica_timeout * 1000)
    if has_waitaof(client):
        return ("WAITAOF", 0, replicas, ms)
    return ("WAIT", replicas, ms)


def _confirmed(reply: Any) -> int:
    return int(reply[1]) if isinstance(reply, list) else int(reply)


def _timeout(name: str, got: int, replicas: int) -> ReplicationTimeoutError:
    retry = {
        "enqueue": "retrying with dedup_key=err.dedup_key (the key this error carries) "
        "enqueues it once",
        "commit": "the worker's next drain goes on from what the primary has",
    }[name]
    return ReplicationTimeoutError(
        f"the {name} reached {got} of the {replicas} replica(s) MOTION_REDIS_MIN_REPLICAS "
        f"asks for within MOTION_REDIS_REPLICA_TIMEOUT "
        f"({get_settings().redis_replica_timeout:g} s): it is on the primary, and may or "
        f"may not survive a failover; {retry}. Check the replicas (INFO replication)."
    )


def run(client: Any, name: str, sha: str, source: str, keys: list[str], args: list[Any]) -> Any:
    """Run script ``name`` (by ``sha``, loading ``source`` if needed) and wait for the
    replicas on the same connection; the script's reply."""
    replicas = wanted(name)
    node, asking = client, False
    cluster = not hasattr(client, "connection_pool")
    deadline = time.monotonic() + get_settings().redis_retry_seconds
    while True:
        if cluster:
            node = _node_for(client, keys[0]) if not asking else node
        pipe = node.pipeline(transaction=False)
        if asking:
            pipe.execute_command("ASKING")
        pipe.evalsha(sha, len(keys), *keys, *args)
        pipe.execute_command(*_wait_command(node, replicas))
        replies = pipe.execute(raise_on_error=False)
        reply, waited = replies[-2], replies[-1]
        if isinstance(reply, redis.exceptions.NoScriptError):
            node.script_load(source)
            continue
        if cluster and isinstance(reply, redis.ResponseError) and time.monotonic() < deadline:
            text = str(reply)
            if text.startswith("MOVED"):
                client.nodes_manager.initialize()
                asking = False
                continue
            if text.startswith("ASK"):
                host, _, port = text.split()[-1].rpartition(":")
                node = client.get_redis_connection(client.get_node(host=host, port=int(port)))
                asking = True
                continue
            if text.startswith("TRYAGAIN"):
                time.sleep(0.05)
                asking = False
                continue
        if isinstance(reply, Exception):
            raise reply
        if isinstance(waited, Exception):
            raise waited
        if _confirmed(waited) < replicas:
            error = _timeout(name, _confirmed(waited), replicas)
            error.reply = reply  # the write is on the primary: what it did
            raise error
        return reply


def _node_for(client: Any, key: str) -> redis.Redis:
    """A plain client of the primary serving ``key``'s slot (as ``client`` knows it)."""
    node = client.nodes_manager.get_node_from_slot(slots.key_slot(key))
    return client.get_redis_connection(node)  # type: ignore[no-any-return]


async def arun(
    client: Any, name: str, sha: str, source: str, keys: list[str], args: list[Any]
) -> Any:
    """Async :func:`run`: the synchronous client of the same URL runs it in a thread
    (script and wait on one connection, the server's ``WAITAOF`` known)."""
    from motion.floor.connection import client_for

    sync = client_for(client.motion_url)
    return await asyncio.to_thread(run, sync, name, sha, source, keys, args)


def reset() -> None:
    """Forget what is known of the servers (tests)."""
    with _lock:
        _waitaof.clear()
