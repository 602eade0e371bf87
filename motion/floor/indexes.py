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
members present, not O(instances); the script answers only for the non-empty parts,
and the client sends the parts' names packed once (:func:`run_over`), so a pass costs
the client about one small command. Should a slot move meanwhile (a reshard, a
failover), the topology is read again and the pass retried once; if a slot is still
moving, the parts are read one by one through the cluster client, which follows
``MOVED`` and ``ASK``.

The recurring passes (sweeper, firer, exporter, held check) do not go over all the
parts: they read those a directory lists as non-empty (:mod:`motion.floor.directory`)
and hand them to these functions (``parts=``), so their cost follows what is in the
index, not the number of slots.

Floor; uses the floor (keys, scripts, slots).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import lru_cache
from typing import Any

import redis

from motion.floor import keys as K
from motion.floor import scripts, slots
from motion.floor.connection import is_cluster

#: most parts one script call reads
CHUNK = 4096


def each_part(
    client: Any, index: str, *command: Any, parts: list[str] | None = None, like: str = ""
) -> Iterator[tuple[str, Any]]:
    """``(part, raw reply)`` of ``command`` (name, then its arguments after the key) on
    every part of ``index`` (or only on ``parts``, e.g. those a
    :mod:`motion.floor.directory` lists) whose reply is not empty (0, an empty list,
    nil); the replies are flat, as Lua gives them. With ``like`` (another index), all
    of ``index``'s parts are grouped as ``like``'s are (same tags, same slots), and
    nothing is kept for ``index`` (a pass over the counters of every component)."""
    for _ in range(2):
        try:
            if parts is not None:
                groups = group(client, parts)
            elif like:
                cut = len(like)
                groups = [
                    (node, [index + part[cut:] for part in chunk])
                    for node, chunk in by_primary(client, like)
                ]
            else:
                groups = by_primary(client, index)
            replies = [(chunk, _run(node, chunk, command)) for node, chunk in groups]
        except (redis.ResponseError, redis.ConnectionError, redis.TimeoutError):
            if not is_cluster(client):
                raise
            client.nodes_manager.initialize()  # a slot moved or a primary failed over
            continue
        for chunk, reply in replies:
            yield from _spread(chunk, reply)
        return
    # a slot still moving: part by part, through the cluster client (MOVED, ASK)
    every = K.parts(index) if not like else [index + p[len(like) :] for p in K.parts(like)]
    for part in every if parts is None else parts:
        yield from _spread([part], _run(client, [part], command))


def _spread(parts: list[str], reply: list[Any]) -> Iterator[tuple[str, Any]]:
    """The ``parts`` script's sparse reply as ``(part, reply)`` pairs."""
    for i in range(0, len(reply), 2):
        yield parts[int(reply[i]) - 1], reply[i + 1]


def by_primary(client: Any, index: str) -> list[tuple[Any, list[str]]]:
    """The parts of ``index``, grouped by the client of the primary serving them: one
    group, ``[(client, [index])]``, on a single Redis (for a script of one's own that
    goes over many parts, as the firer's does). Kept until the client's view of the
    cluster changes."""
    if not is_cluster(client):
        return [(client, [index])]
    topology = client.nodes_manager.slots_cache
    known = _groups.get(index)
    if known is None or known[0] is not topology:  # K.parts is in slot order
        groups = _by_primary(client, K.parts(index), range(slots.SLOTS))
        known = _groups[index] = (topology, groups)
    return known[1]


def group(client: Any, parts: list[str]) -> list[tuple[Any, list[str]]]:
    """``parts`` (of one index, or of several) grouped by the client of the primary
    serving them, as :func:`by_primary` groups all of an index's; ``[(client, parts)]``
    on a single Redis; nothing for no parts."""
    if not parts:
        return []
    if not is_cluster(client):
        return [(client, parts)]
    topology, key = client.nodes_manager.slots_cache, tuple(parts)
    known = _listed.get(key)
    if known is None or known[0] is not topology:  # a directory's listing changes rarely
        if len(_listed) >= 16:
            _listed.clear()
        known = _listed[key] = (topology, _by_primary(client, parts))
    return known[1]


#: the last few lists of parts grouped (with the cluster view they were grouped in)
_listed: dict[tuple[str, ...], tuple[Any, list[tuple[Any, list[str]]]]] = {}


#: per index: the cluster view (its slot table) and the parts grouped by primary in it
_groups: dict[str, tuple[Any, list[tuple[Any, list[str]]]]] = {}


def _run(client: Any, parts: list[str], command: tuple[Any, ...]) -> list[Any]:
    """The ``parts`` script: ``command`` on each of ``parts`` (all on one node)."""
    return list(run_over(client, "parts", parts, [command[0], len(command) - 1, *command[1:]]))


def run_over(client: Any, name: str, parts: list[str], args: list[Any]) -> Any:
    """Run script ``name`` with ``KEYS[1]`` the first of ``parts`` (all on the node of
    the plain ``client``) and ``ARGV`` = ``args``, then the other parts.

    With many parts (a cluster's), the command is sent packed by hand: the parts'
    share of it is encoded once per list of parts and kept (:func:`_packed`), so a
    pass costs the client little more than one small command."""
    if len(parts) < 64 or is_cluster(client):
        return scripts.run(client, name, parts[:1], [*args, *parts[1:]])
    script = scripts.get(name)
    head = ["EVALSHA", script.sha, 1, parts[0], *args]
    out = [b"*%d\r\n" % (len(head) + len(parts) - 1)]
    for arg in head:
        raw = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    out.append(_packed(tuple(parts[1:])))
    pool = client.connection_pool
    conn = pool.get_connection()
    try:
        conn.send_packed_command(out)
        reply = conn.read_response()
    except redis.exceptions.NoScriptError:
        client.script_load(script.source)
        return run_over(client, name, parts, args)
    except BaseException:
        conn.disconnect()
        raise
    finally:
        pool.release(conn)
    return reply


@lru_cache(maxsize=64)
def _packed(parts: tuple[str, ...]) -> bytes:
    """``parts`` as the bulk strings of a Redis command."""
    return b"".join(b"$%d\r\n%s\r\n" % (len(p), p.encode()) for p in parts)


def _by_primary(
    client: Any, parts: list[str], where: Iterable[int] | None = None
) -> list[tuple[Any, list[str]]]:
    """The parts (in slots ``where``, if known) grouped by the primary serving their
    slot (as this client knows the cluster), in chunks of :data:`CHUNK`, each with a
    plain client of that primary."""
    by_node: dict[str, tuple[Any, list[str]]] = {}
    cache = client.nodes_manager.slots_cache
    found = where if where is not None else (slots.key_slot(part) for part in parts)
    for part, slot in zip(parts, found, strict=True):
        node = cache[slot][0]
        entry = by_node.get(node.name)
        if entry is None:
            entry = by_node[node.name] = (client.get_redis_connection(node), [])
        entry[1].append(part)
    return [
        (node_client, chunk[start : start + CHUNK])
        for node_client, chunk in by_node.values()
        for start in range(0, len(chunk), CHUNK)
    ]


def zcard(client: Any, index: str, parts: list[str] | None = None) -> int:
    """Members of the sorted-set ``index``, over all parts (or ``parts``)."""
    return sum(int(n) for _, n in each_part(client, index, "ZCARD", parts=parts))


def oldest(
    client: Any, index: str, count: int, parts: list[str] | None = None
) -> list[tuple[bytes, float]]:
    """The ``count`` lowest-scored members of the sorted-set ``index`` (all parts, or
    ``parts``), with scores."""
    found: list[tuple[bytes, float]] = []
    command = ("ZRANGE", 0, max(count, 1) - 1, "WITHSCORES")
    for _, flat in each_part(client, index, *command, parts=parts):
        found += [(flat[i], float(flat[i + 1])) for i in range(0, len(flat), 2)]
    found.sort(key=lambda pair: pair[1])
    return found[:count]


def due(
    client: Any, index: str, max_score: int, count: int, parts: list[str] | None = None
) -> dict[str, list[str]]:
    """Per part of ``index`` (or of ``parts``): up to ``count`` names scored at most
    ``max_score``."""
    out: dict[str, list[str]] = {}
    command = ("ZRANGEBYSCORE", "-inf", max_score, "LIMIT", 0, count)
    for part, reply in each_part(client, index, *command, parts=parts):
        if reply:
            out[part] = [name.decode() for name in reply]
    return out


def scan_members(
    client: Any, index: str, parts: list[str] | None = None
) -> Iterator[tuple[bytes, float]]:
    """Every ``(member, score)`` of the sorted-set ``index`` (ZSCAN of each non-empty
    part, of all or of ``parts``)."""
    for part, n in each_part(client, index, "ZCARD", parts=parts):
        if n:
            yield from client.zscan_iter(part, count=1000)


def members(client: Any, index: str, parts: list[str] | None = None) -> set[bytes]:
    """The members of the set ``index`` (all parts, or ``parts``)."""
    out: set[bytes] = set()
    for _, reply in each_part(client, index, "SMEMBERS", parts=parts):
        out.update(reply)
    return out


def counters(client: Any, key: str, parts: list[str] | None = None) -> dict[bytes, bytes]:
    """The counters of the hash ``key`` (a ``stats`` key), summed over its parts (all,
    or ``parts``), in the shape ``HGETALL`` gives them."""
    total: dict[bytes, int] = {}
    for _, flat in each_part(client, key, "HGETALL", parts=parts):
        for i in range(0, len(flat), 2):
            total[flat[i]] = total.get(flat[i], 0) + int(flat[i + 1])
    return {field: str(value).encode() for field, value in total.items()}


def lowest(client: Any, parts: list[str]) -> dict[str, float]:
    """The lowest score in each of the sorted-set ``parts`` that is not empty."""
    command = ("ZRANGE", 0, 0, "WITHSCORES")
    return {part: float(flat[1]) for part, flat in each_part(client, "", *command, parts=parts)}


def forget(pipe: Any, name: str, *indexes: str) -> None:
    """Queue, on ``pipe``, the removal of instance ``name`` from each of ``indexes``
    (the part its scripts touch)."""
    for index in indexes:
        pipe.zrem(K.part(index, name), name)
