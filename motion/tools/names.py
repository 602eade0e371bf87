"""A component's instances by id: paging and prefix search through the name index.

The index is a sorted set per component (:func:`motion.floor.keys.names`) holding
every instance id with score 0: the ``init`` script adds an id when it creates the
instance, clearing removes it. ``ZRANGEBYLEX`` then gives a page of ids in id
order, from a cursor (the last id shown) and within a prefix, in O(log n + page),
so a page or a search costs the same with ten instances or ten million.

Instances created before the index existed are added by one ``SCAN`` pass the first
time a component is listed (:func:`ensure`; ``motion reindex COMPONENT`` runs it on
demand); :func:`motion.floor.keys.names_ready` records that it ran. Every id a page
shows is checked against its meta key, and an id whose instance is gone (cleared by a
process that predates the index, or while the pass ran) is removed then, so the
index heals itself. With ``MOTION_REDIS_SHARDS`` each shard keeps the index of its
own instances and a page merges them; on a Redis Cluster the index is split per hash
slot like the other global indexes (:func:`motion.floor.keys.part`) and a page merges
the parts (one ``parts`` script per primary, :mod:`motion.floor.indexes`).

Tool; uses the floor (connection, keys).
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from motion.floor import indexes
from motion.floor import keys as K
from motion.floor.connection import all_urls, client_for, translate_errors
from motion.floor.settings import get_settings

#: ids added per ZADD while the index is built from a SCAN
_BATCH = 1000


@dataclass
class Page:
    """One page of instance ids, and the cursor of the next (``""`` after the last)."""

    ids: list[str]
    next_cursor: str = ""


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def build(client: redis.Redis, component: str) -> int:
    """Add every instance of ``component`` on this server to the index (a ``SCAN`` of
    its meta keys, in batches), then mark the index ready; returns the ids seen."""
    seen = 0
    batch: list[str] = []
    start = len(component) + len(K.SEPARATOR)
    with translate_errors(f"indexing the instances of {component}"):
        for key in client.scan_iter(match=K.meta_pattern(component), count=5000):
            batch.append(K.name_from_meta_key(_text(key))[start:])
            if len(batch) >= _BATCH:
                _add(client, component, batch)
                seen, batch = seen + len(batch), []
        if batch:
            _add(client, component, batch)
        client.set(K.names_ready(component), "1")
    return seen + len(batch)


def _part(component: str, instance_id: str) -> str:
    """The part of the index holding ``instance_id`` (the index itself on one Redis)."""
    return K.names(component, K.instance_name(component, instance_id))


def _add(client: redis.Redis, component: str, ids: list[str]) -> None:
    """Add ``ids`` to the index: one ``ZADD`` on one Redis, one per id's part on a cluster."""
    if not get_settings().redis_cluster:
        client.zadd(K.names(component), dict.fromkeys(ids, 0))
        return
    pipe = client.pipeline(transaction=False)
    for instance_id in ids:
        pipe.zadd(_part(component, instance_id), {instance_id: 0})
    pipe.execute()


def _lex(client: redis.Redis, component: str, low: bytes, high: bytes, count: int) -> list[str]:
    """The first ``count`` ids between ``low`` and ``high`` (``ZRANGEBYLEX``), over every
    part of the index (one script per primary on a cluster), in id order."""
    found: list[bytes] = []
    command = ("ZRANGEBYLEX", low, high, "LIMIT", 0, count)
    for _, reply in indexes.each_part(client, K.names(component), *command):
        found += reply
    return [_text(i) for i in sorted(found)[:count]]


def ensure(client: redis.Redis, component: str) -> None:
    """Build ``component``'s index on this server unless it was built already."""
    with translate_errors(f"reading the instance index of {component}"):
        ready = client.exists(K.names_ready(component))
    if not ready:
        build(client, component)


def _range(prefix: str, after: str) -> tuple[bytes, bytes]:
    low = b"[" + prefix.encode() if prefix else b"-"
    if after and after.encode() >= prefix.encode():
        low = b"(" + after.encode()
    high = b"[" + prefix.encode() + b"\xff" if prefix else b"+"
    return low, high


def _live(client: redis.Redis, component: str, ids: list[str]) -> list[str]:
    """``ids`` whose instance exists; the others leave the index."""
    pipe = client.pipeline(transaction=False)
    for instance_id in ids:
        pipe.exists(K.InstanceKeys.of(K.instance_name(component, instance_id)).meta)
    exists = pipe.execute()
    gone = [i for i, found in zip(ids, exists, strict=True) if not found]
    if gone:
        pipe = client.pipeline(transaction=False)
        for instance_id in gone:
            pipe.zrem(_part(component, instance_id), instance_id)
        pipe.execute()
    return [i for i, found in zip(ids, exists, strict=True) if found]


def page(component: str, prefix: str = "", cursor: str = "", size: int = 50) -> Page:
    """``size`` ids of ``component``'s instances starting with ``prefix``, in id order,
    after ``cursor`` (the previous page's ``next_cursor``; ``""`` for the first)."""
    ids: list[str] = []
    more = False
    for url in all_urls():
        client = client_for(url)
        ensure(client, component)
        after = cursor
        with translate_errors(f"listing instances of {component}"):
            while True:  # read on past ids whose instance is gone
                low, high = _range(prefix, after)
                found = _lex(client, component, low, high, size + 1)
                live = _live(client, component, found[:size])
                ids += live
                if len(found) > size:
                    more = True
                if len(live) == len(found[:size]) or len(found) <= size:
                    break
                after = found[size - 1]
    ids = sorted(set(ids))
    if len(ids) > size:
        ids, more = ids[:size], True
    return Page(ids, ids[-1] if more and ids else "")
