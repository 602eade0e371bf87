"""Directories of the non-empty parts of the cluster-wide indexes, so a pass over an
index costs O(its members), not O(slots).

On a cluster a global index (the sweep schedule, the held instances, the due index of
timers...) has one part per hash slot (:func:`motion.floor.keys.part`), and a pass
over all 16,384 of them costs a fixed few milliseconds whatever is in them. So each
index read by a recurring pass has a *directory*: a sorted set of its own slot
(:func:`motion.floor.keys.directory`) listing the slot tags of its non-empty parts,
each scored *at most* the lowest score in its part (for the due index, the earliest
timer: the firer reads only the parts with something due, O(due); for the sweep
schedule, the earliest look due: the sweeper reads O(due) parts too). A listed part
may be empty, or scored lower than its content: readers then find nothing there
and :func:`refresh` it. On a single Redis nothing changes: the plain key is its own
directory (:func:`parts` gives ``[index]``) and nothing here writes.

The directory lives in another slot than the parts, so the script that makes a part
non-empty cannot list it: the script says so in its reply (the enqueue's fourth
element: the instance is now the lowest of its part of the sweep schedule, which was
empty or held only looks due later, say backed off) and the caller then lists it
(:func:`note`, ``ZADD LT``: a score only ever lowered); writers that know no score
(a commit that set timers) read the part's lowest after the script (:func:`touch`).
A pass that finds a part empty or scored later than listed rewrites its entry and
then reads the part again (:func:`refresh`): an entry written meanwhile by a writer
(whose part write came first) is put back, so the prune and the add cannot race an
instance out of the directory.

An entry can still be lost: a process that dies between its script and the
``ZADD``. So a full pass over all parts (:func:`rebuild`, 16,384 key lookups per
index) runs every :data:`FULL_PASS_SECONDS` in one process of the cluster at a time
(a lock, taken by the workers' sweeper timers), and lists whatever it finds: an
instance whose entry was lost is swept, held or fired at most that much (plus a
sweep period) later than it would have been. A failover can lose entries too (the
replica promoted had not received the last ones): the sweeper that sees the slot
table changed runs the full pass at once (:func:`rebuild_if_moved`).

The component set and each component's counters (``motion:components``,
``motion:stats:<component>``) are read by the exporter, ``motion status`` and the
dashboard; their parts never empty on their own (counters persist), so their
directories (``directory(COMPONENTS)``, ``directory(stats(component))``, every entry
scored 0) are only added to: a writer lists a part the first time *this process*
writes it (:func:`note_once`: at most one ``ZADD`` per part per process, a set lookup
after that), and the readers read only the parts listed (:func:`components`,
:func:`counters`). A listed part that became empty (instances cleared) reads as
nothing. An entry lost (a process dying between its write and its note, a
failover) is listed again by the same full pass (:func:`rebuild_kept`): until then
the figures of that slot's instances are missing from the readers' sums.

Floor; uses the floor (connection, errors, indexes, keys, scripts, settings).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import redis

from motion.floor import indexes, scripts
from motion.floor import keys as K
from motion.floor.connection import is_cluster
from motion.floor.errors import ReplicationTimeoutError
from motion.floor.settings import get_settings

log = logging.getLogger("motion.directory")

#: how often (at most) one process of a cluster re-lists every non-empty part (seconds)
FULL_PASS_SECONDS = 300
#: most parts one look at a directory returns (a pass looks again while it got as many)
MOST = 4096
#: the indexes with a directory (the sweep schedule's also lists the pending index's
#: parts: an instance is in both or in neither)
INDEXES = (K.SWEEP, K.HELD, K.TIMERS)


def _tag(part: str) -> str:
    return part[part.rindex("{") + 1 : -1]


def parts(client: Any, index: str, of: str | None = None) -> list[str]:
    """Every part of ``of`` (default ``index``) that ``index``'s directory lists: on a
    single Redis ``[of]``, the plain key. (``parts(client, K.SWEEP, K.PENDING)``: the
    pending index's non-empty parts, listed with the sweep schedule's.)"""
    of = of or index
    if not is_cluster(client):
        return [of]
    return [K.part_at(of, tag.decode()) for tag in client.zrange(K.directory(index), 0, -1)]


def due(client: Any, index: str, late_ms: int, count: int) -> tuple[int, list[str], float | None]:
    """``(Redis' ms now, parts of index listed with a score <= now - late_ms, the lowest
    score listed or None)``, in one round trip (``lua/directory.lua``); at most
    ``count`` parts. On a single Redis: ``(now, [index], None)``."""
    if not is_cluster(client):
        seconds, micros = client.time()
        return int(seconds) * 1000 + int(micros) // 1000, [index], None
    reply = scripts.run(client, "directory", [K.directory(index)], [late_ms, count])
    lowest = float(reply[1]) if reply[1] not in (b"", "") else None
    return int(reply[0]), [K.part_at(index, tag.decode()) for tag in reply[2:]], lowest


def note(client: Any, index: str, name: str, score: float) -> None:
    """List the part of ``index`` instance ``name``'s scripts touch, scored at most
    ``score`` (``ZADD LT``: lowers an entry, never raises one); nothing on one Redis."""
    if is_cluster(client):
        client.execute_command("ZADD", K.directory(index), "LT", score, K.tag_of(name))


def note_command(index: str, name: str, score: float) -> tuple[Any, ...]:
    """The command of :func:`note` (for a caller that sends it itself, on a cluster)."""
    return ("ZADD", K.directory(index), "LT", score, K.tag_of(name))


def enqueue_listed(reply: Any) -> int:
    """From an enqueue script's reply: the score to list its part of the sweep schedule
    at (the instance is its part's lowest now: the fourth element), or 0 (nothing to
    list; one Redis)."""
    if not get_settings().redis_cluster or not isinstance(reply, list) or len(reply) < 4:
        return 0
    return int(reply[3]) if int(reply[0]) > 0 else 0


def after_enqueue(client: Any, name: str, reply: Any) -> None:
    """List the sweep schedule's part of ``name`` if the enqueue that gave ``reply``
    made the instance its part's lowest (:func:`enqueue_listed`)."""
    score = enqueue_listed(reply)
    if score:
        try:
            note(client, K.SWEEP, name, score)
        except redis.RedisError:  # stored: the full pass lists it
            log.warning("%s: its part of the sweep schedule is not listed", name)


def run_enqueue(client: Any, name: str, keys: list[str], args: list[Any]) -> Any:
    """The enqueue script for instance ``name``, then :func:`after_enqueue`; also when
    the wait for the replicas timed out (the update is on the primary: its part must
    be listed all the same, or the sweeper would not see it)."""
    try:
        reply = scripts.run(client, "enqueue", keys, args)
    except ReplicationTimeoutError as exc:
        after_enqueue(client, name, exc.reply)
        raise
    after_enqueue(client, name, reply)
    return reply


def run_commit(client: Any, name: str, commit: Callable[[], Any], timed: bool) -> Any:
    """Run ``commit`` (a call of instance ``name``'s ``commit`` script); its reply. With
    ``timed`` (the commit sets or releases timers), a cluster then lists the due index's
    part at its earliest (:func:`touch`, for the firers), also when the wait for the
    replicas timed out (the commit is on the primary)."""
    try:
        return commit()
    finally:
        if timed:
            try:
                touch(client, K.TIMERS, name)
            except redis.RedisError:  # the full pass lists it
                log.warning("%s: its part of the due index is not listed", name)


def touch(client: Any, index: str, name: str) -> None:
    """List ``name``'s part of ``index`` at its lowest score now, if it is not empty
    (after a script that may have lowered it without saying how); nothing on one Redis."""
    if not is_cluster(client):
        return
    part = K.part(index, name)
    first = client.zrange(part, 0, 0, withscores=True)
    if first:
        client.execute_command("ZADD", K.directory(index), "LT", first[0][1], K.tag_of(name))


def refresh(client: Any, index: str, listed: list[str]) -> None:
    """Rewrite the entries of the ``listed`` parts of ``index`` from what they hold
    (a pass went through them): an empty part leaves the directory, another is scored
    its lowest score (raised, say, once its timers were claimed). Then each part is read
    again and an entry lowered (or put back) where a writer changed the part meanwhile:
    its own ``ZADD LT`` may have come before this rewrite. Nothing on one Redis."""
    if not is_cluster(client) or not listed:
        return
    key = K.directory(index)
    seen = indexes.lowest(client, listed)
    gone = [_tag(part) for part in listed if part not in seen]
    pipe = client.pipeline(transaction=False)
    if gone:
        pipe.zrem(key, *gone)
    if seen:
        pipe.zadd(key, {_tag(part): score for part, score in seen.items()})
    pipe.execute()
    again = indexes.lowest(client, listed)
    back = {
        _tag(part): score for part, score in again.items() if part not in seen or score < seen[part]
    }
    if back:
        client.zadd(key, back, lt=True)


def rebuild(client: Any, index: str) -> int:
    """The full pass: list every non-empty part of ``index`` (``ZADD LT`` at its lowest
    score), reading all 16,384; how many are non-empty. Nothing on one Redis."""
    if not is_cluster(client):
        return 0
    command = ("ZRANGE", 0, 0, "WITHSCORES")
    found = indexes.each_part(client, index, *command)  # by primary, grouped once
    entries = {_tag(part): float(flat[1]) for part, flat in found}
    if entries:
        client.zadd(K.directory(index), entries, lt=True)
    return len(entries)


def rebuild_if_moved(client: Any) -> bool:
    """Run :func:`rebuild` on every directory's index if the cluster's slot table
    changed since this process last looked (a failover: the replica promoted may lack
    the entries its old primary listed last; a reshard); whether it ran."""
    if not is_cluster(client):
        return False
    topology = client.nodes_manager.slots_cache
    seen, _seen[0] = _seen[0], topology
    if seen is None or seen is topology:
        return False
    for index in INDEXES:
        rebuild(client, index)
    rebuild_kept(client)
    return True


#: the slot table this process last looked at (:func:`rebuild_if_moved`)
_seen: list[Any] = [None]


def rebuild_if_due(client: Any) -> bool:
    """Run :func:`rebuild` on every directory's index unless a process of the cluster
    did within :data:`FULL_PASS_SECONDS` (a lock); whether this call ran it."""
    if not is_cluster(client):
        return False
    if not client.set(K.DIRECTORY_LOCK, "1", nx=True, px=FULL_PASS_SECONDS * 1000):
        return False
    listed = {index: rebuild(client, index) for index in INDEXES}
    listed["counted"] = rebuild_kept(client)
    log.debug("directories re-listed: %s", listed)
    return True


#: the parts of the component set and of the counters this process has listed (or,
#: on one Redis, the plain keys it has written): :func:`note_once` lists each once
_kept: set[str] = set()


def _index_of(part: str) -> str:
    return part[: part.rindex(":{")]


def note_once(client: Any, part: str) -> None:
    """List ``part`` (of the component set, or of a component's counters: a part never
    emptied on its own) in its index's directory, the first time this process wrote
    it; a set lookup after that (on one Redis, always). A failed ``ZADD`` is tried
    again at the next write; the full pass lists the part meanwhile."""
    if part in _kept:
        return
    if is_cluster(client):
        try:
            client.execute_command("ZADD", K.directory(_index_of(part)), "NX", 0, _tag(part))
        except redis.RedisError:
            log.warning("%s is not listed in its directory yet", part)
            return
    _kept.add(part)


async def anote_once(client: Any, part: str) -> None:
    """:func:`note_once` on an asyncio client."""
    if part in _kept:
        return
    if is_cluster(client):
        try:
            await client.execute_command("ZADD", K.directory(_index_of(part)), "NX", 0, _tag(part))
        except redis.RedisError:
            log.warning("%s is not listed in its directory yet", part)
            return
    _kept.add(part)


def forget_kept() -> None:
    """Forget which parts this process listed (a test that empties its Redis)."""
    _kept.clear()


def components(client: Any) -> set[bytes]:
    """The names of every component that ever had an instance: on a cluster, from the
    parts of the component set its directory lists."""
    return indexes.members(client, K.COMPONENTS, parts(client, K.COMPONENTS))


def counters(client: Any, component: str) -> dict[bytes, bytes]:
    """``component``'s counters summed over the parts its directory lists (on one
    Redis, the plain key), in the shape ``HGETALL`` gives them."""
    key = K.stats(component)
    return indexes.counters(client, key, parts(client, key))


def rebuild_kept(client: Any) -> int:
    """The full pass of the component set's and the counters' directories: list every
    part that exists (16,384 key lookups per index: the component set, then each
    component's counters); how many parts were found. Nothing on one Redis."""
    if not is_cluster(client):
        return 0
    found = _relist(client, K.COMPONENTS)
    for name in sorted(indexes.members(client, K.COMPONENTS, parts(client, K.COMPONENTS))):
        found += _relist(client, K.stats(name.decode()), like=K.COMPONENTS)
    return found


def _relist(client: Any, index: str, like: str = "") -> int:
    tags = [_tag(part) for part, _ in indexes.each_part(client, index, "EXISTS", like=like)]
    if tags:
        client.zadd(K.directory(index), dict.fromkeys(tags, 0), nx=True)
    return len(tags)
