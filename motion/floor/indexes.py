"""Reading the global indexes over all their parts (one part per hash slot on a cluster).

The scripts of an instance touch only the part of each global index in that
instance's slot (:func:`motion.floor.keys.part`). Readers (the sweeper, the exporter,
``motion status``, the dashboard) go over every part with the functions here, which
run one read command on many parts at once with the ``parts`` script
(``lua/parts.lua``). On a single Redis an index has one part, the plain key: one
round trip, as before. On a cluster an index has 16,384 parts; the script runs once
per primary on the parts of the slots that primary serves (Redis 7's
``allow-cross-slot-keys``: one round trip per primary, an empty part costs a key
lookup), so a pass costs O(slots) key lookups on the servers plus the work on the
members present, not O(instances). Should a slot move meanwhile (a reshard), the
topology is read again and the parts are read one by one through the cluster
client, which follows ``MOVED`` and ``ASK``.

Floor; uses the floor (keys, scripts, slots).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import redis

from motion.floor import keys as K
from motion.floor import scripts, slots
from motion.floor.connection import is_cluster

#: most parts one script call reads
CHUNK = 4096


def each_part(client: Any, index: str, *command: Any) -> Iterator[tuple[str, Any]]:
    """``(part, raw reply)`` of ``command`` (name, then its arguments after the key) on
    every part of ``index``; the replies are flat, as Lua gives them."""
    parts = K.parts(index)
    if not is_cluster(client):
        yield from zip(parts, _run(client, parts, command), strict=True)
        return
    try:
        replies = [
            (chunk, _run(node, chunk, command)) for node, chunk in _by_primary(client, parts)
        ]
    except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
        client.nodes_manager.initialize()  # a slot moved or a primary failed over
        for part in parts:
            yield part, _run(client, [part], command)[0]
        return
    for chunk, reply in replies:
        yield from zip(chunk, reply, strict=True)


def _run(client: Any, parts: list[str], command: tuple[Any, ...]) -> list[Any]:
    """The ``parts`` script: ``command`` on each of ``parts`` (all on one node)."""
    args = [command[0], len(command) - 1, *command[1:], *parts[1:]]
    return list(scripts.run(client, "parts", parts[:1], args))


def _by_primary(client: Any, parts: list[str]) -> list[tuple[Any, list[str]]]:
    """The parts grouped by the primary serving their slot (as this client knows the
    cluster), in chunks of :data:`CHUNK`, each with a plain client of that primary."""
    by_node: dict[str, tuple[Any, list[str]]] = {}
    cache = client.nodes_manager.slots_cache
    for part in parts:
        node = cache[slots.key_slot(part)][0]
        entry = by_node.get(node.name)
        if entry is None:
            entry = by_node[node.name] = (client.get_redis_connection(node), [])
        entry[1].append(part)
    return [
        (node_client, chunk[start : start + CHUNK])
        for node_client, chunk in by_node.values()
        for start in range(0, len(chunk), CHUNK)
    ]


def zcard(client: Any, index: str) -> int:
    """Members of the sorted-set ``index``, over all parts."""
    return sum(int(n) for _, n in each_part(client, index, "ZCARD"))


def oldest(client: Any, index: str, count: int) -> list[tuple[bytes, float]]:
    """The ``count`` lowest-scored members of the sorted-set ``index`` (all parts), with scores."""
    found: list[tuple[bytes, float]] = []
    for _, flat in each_part(client, index, "ZRANGE", 0, max(count, 1) - 1, "WITHSCORES"):
        found += [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
    found.sort(key=lambda pair: pair[1])
    return found[:count]


def due(client: Any, index: str, max_score: int, count: int) -> dict[str, list[str]]:
    """Per part of ``index``: up to ``count`` names scored at most ``max_score``."""
    out: dict[str, list[str]] = {}
    command = ("ZRANGEBYSCORE", "-inf", max_score, "LIMIT", 0, count)
    for part, reply in each_part(client, index, *command):
        if reply:
            out[part] = [name.decode() for name in reply]
    return out


def scan_members(client: Any, index: str) -> Iterator[tuple[bytes, float]]:
    """Every ``(member, score)`` of the sorted-set ``index`` (ZSCAN of each non-empty part)."""
    for part, n in each_part(client, index, "ZCARD"):
        if n:
            yield from client.zscan_iter(part, count=1000)


def members(client: Any, index: str) -> set[bytes]:
    """The members of the set ``index`` (all parts)."""
    out: set[bytes] = set()
    for _, reply in each_part(client, index, "SMEMBERS"):
        out.update(reply)
    return out


def counters(client: Any, key: str) -> dict[bytes, bytes]:
    """The counters of the hash ``key`` (a ``stats`` key), summed over its parts, in
    the shape ``HGETALL`` gives them."""
    total: dict[bytes, int] = {}
    for _, flat in each_part(client, key, "HGETALL"):
        for i in range(0, len(flat), 2):
            total[flat[i]] = total.get(flat[i], 0) + int(flat[i + 1])
    return {field: str(value).encode() for field, value in total.items()}


def forget(pipe: Any, name: str, *indexes: str) -> None:
    """Queue, on ``pipe``, the removal of instance ``name`` from each of ``indexes``
    (the part its scripts touch)."""
    for index in indexes:
        pipe.zrem(K.part(index, name), name)
