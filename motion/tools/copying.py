"""Copying motion's keys from one Redis to another, into a Redis Cluster too.

``motion copy SRC DEST`` (:func:`motion.tools.admin.copy_db`) finds every ``motion:*``
key of ``SRC`` with ``SCAN`` and copies it with ``DUMP``/``RESTORE ... REPLACE``,
keeping TTLs. An instance's keys carry its hash tag, so they land in its slot on a
cluster as they are. The global keys with no hash tag are different on a cluster,
where each is split into one part per slot (:func:`motion.floor.keys.part`):

* a sorted set (the pending, sweep and held indexes, and any index of instance
  names) is re-added member by member to the part of each member's slot;
* a hash of counters (``motion:stats:<component>``) is added (``HINCRBY``) to one part
  (readers sum the parts), so copying several shards adds their counts up, and that
  part is listed in the counters' directory;
* a set (``motion:components``) is added to one part (readers take the union), listed
  in its directory;
* anything else (the HTTP token secret) is copied as it is; the sweeper's lock is
  left behind, and the directories' lock is deleted, so the first sweeper tick lists
  the copied parts in the directories (:mod:`motion.floor.directory`).

This is the way from ``MOTION_REDIS_SHARDS`` to a cluster: stop the callers and
workers, ``motion copy`` each shard into the cluster, then point everything at it.

Tool: uses the floor (connection, directory, keys, slots, urls).
"""

from __future__ import annotations

from typing import Any

from motion.floor import directory, slots
from motion.floor import keys as K
from motion.floor.connection import new_async_client
from motion.floor.urls import is_cluster_url

#: keys read per round trip
BATCH = 500


async def copy_keys(src_url: str, dest_url: str) -> int:
    """Copy every motion key of ``src_url`` into ``dest_url``; the number of keys copied."""
    source = new_async_client(src_url)
    target = new_async_client(dest_url)
    into_cluster = is_cluster_url(dest_url)
    copied = 0
    try:
        batch: list[bytes] = []
        async for key in source.scan_iter(match=f"{K.PREFIX}:*", count=1000):
            if into_cluster and b"{" not in key:
                copied += await _split(source, target, key)
                continue
            batch.append(key)
            if len(batch) >= BATCH:
                copied += await _copy_batch(source, target, batch)
                batch = []
        if batch:
            copied += await _copy_batch(source, target, batch)
        if into_cluster:  # the parts copied are in no directory yet: the workers' next
            await target.delete(K.DIRECTORY_LOCK)  # sweeper tick re-lists every part
    finally:
        await source.aclose()
        await target.aclose()
    return copied


async def _copy_batch(source: Any, target: Any, keys: list[bytes]) -> int:
    read = source.pipeline(transaction=False)
    for key in keys:
        read.dump(key)
        read.pttl(key)
    replies = await read.execute()
    write = target.pipeline(transaction=False)
    copied = 0
    for key, data, ttl in zip(keys, replies[::2], replies[1::2], strict=True):
        if data is None:  # deleted since the scan
            continue
        write.restore(key, max(int(ttl), 0), data, replace=True)
        copied += 1
    if copied:
        await write.execute()
    return copied


async def _split(source: Any, target: Any, raw: bytes) -> int:
    """Copy the global key ``raw`` into its per-slot parts on the cluster ``target``."""
    key = raw.decode()
    if key == K.SWEEPER_LOCK:
        return 0
    kind = (await source.type(raw)).decode()
    one_part = f"{key}:{{{slots.tag(0)}}}"
    if kind == "zset":
        write = target.pipeline(transaction=False)
        listed: dict[str, float] = {}  # the parts written, at their lowest score
        for member, score in await source.zrange(raw, 0, -1, withscores=True):
            write.zadd(K.part(key, member.decode(), cluster=True), {member: score}, nx=True)
            tag = K.tag_of(member.decode())
            listed[tag] = min(score, listed.get(tag, score))
        index = K.SWEEP if key == K.PENDING else key  # the pending index is listed with it
        if index in directory.INDEXES and listed:
            zero = index != key  # (the sweep schedule's entries: at most its lowest score)
            entries = {tag: 0.0 if zero else score for tag, score in listed.items()}
            write.zadd(K.directory(index), entries, lt=True)
        await write.execute()
    elif kind == "hash":
        found = await source.hgetall(raw)
        if not all(value.lstrip(b"-").isdigit() for value in found.values()):
            return await _copy_batch(source, target, [raw])  # not counters: as it is
        write = target.pipeline(transaction=False)
        for field, value in found.items():
            write.hincrby(one_part, field, int(value))
        if key.startswith(K.stats("")) and found:  # listed for the exporter and status
            write.zadd(K.directory(key), {slots.tag(0): 0}, nx=True)
        await write.execute()
    elif kind == "set":
        found = await source.smembers(raw)
        if found:
            await target.sadd(one_part, *found)
            if key == K.COMPONENTS:
                await target.zadd(K.directory(key), {slots.tag(0): 0}, nx=True)
    else:
        return await _copy_batch(source, target, [raw])
    return 1
