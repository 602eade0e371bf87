"""Leases: one drainer per instance at a time, with a fencing token.

A worker takes an instance's lease before draining its inbox (the ``begin``
script, which also returns the first updates to apply; see :mod:`motion.worker.engine`).
The lease carries a token, ``<incarnation>:<fence>:<nonce>``: the fence only grows
within a life of the instance, the incarnation id is new for each life and the
nonce is random, so no token is ever handed out twice, even after the instance was
cleared and created again or Redis lost the counter. Every commit checks the token
holds the lease and belongs to the instance's current incarnation, so a worker that
lost its lease (paused, partitioned, too slow, or draining a cleared life) cannot
commit. One daemon thread per process
renews every held lease while slow ops (an LLM call) run.

A renewal can reach Redis just after the holder's own last commit (or
:func:`release`) freed the lease, while the holder has not yet dropped it from the
renewer: on a loaded machine the drain thread may wait for the CPU in between.
The holder sets :attr:`Lease.ending` before any call that may free the lease (and
clears it when the lease was kept), so such a refused renewal is not taken for a
lost lease.

An op that holds the GIL (a long regex, a big-integer op in C) keeps that thread
from running, and the lease key expires. Expiry only lets another worker take
over (a new token); while nobody has, the holder's token is still the instance's
fence, and its renewal and commit are accepted (see ``holds`` in ``lua/lib.lua``):
the token is what keeps a commit safe.

Lingering (:func:`linger`): an instance is *hot* when its last :data:`HOT_RUN`
updates were enqueued at least one per ``MOTION_LINGER_MS`` on average (Redis' clock,
from the inbox entries; this process remembers the last :data:`REMEMBERED` instances).
A drain of a hot instance that emptied the inbox keeps the lease up to
``MOTION_LINGER_MS`` more: the ``linger`` script marks the meta, and the next
``enqueue`` sees the lease held and the mark and, instead of sending a Celery wake-up,
pushes the seq onto the instance's nudge list, which the drain blocks on
(``BLPOP``). The drain applies the update in the same task (it shows in that task's
``seqs`` in Flower) and lingers again. The commit that lingers, the ``BLPOP`` and the
read of the next window go in one round trip (:func:`commit`), so the drain takes
every update that came meanwhile in one window and commits them together. The wait
ends early for a timer of the instance (a debounce, a due time, a resumed flow): the
commit says when the next is due, and a wake-up sent for one meanwhile is pushed onto
the nudge list by ``begin.lua``. When nothing comes it releases the lease as
before (``release.lua`` refuses while updates wait, so an update enqueued as the
linger ends is never stranded); a worker that dies lingering leaves the lease to
expire and the sweeper to re-wake the instance.

Worker road; uses the floor (connection, inbox, keys, lanes, scripts, settings, store).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import redis
from redis.exceptions import NoScriptError

from motion.floor import directory, replication, scripts, store
from motion.floor import keys as K
from motion.floor.connection import is_cluster
from motion.floor.errors import PayloadError
from motion.floor.inbox import Window, entry_time
from motion.floor.lanes import fast_pipeline
from motion.floor.settings import get_settings

log = logging.getLogger("motion.lease")


class Lease:
    """A held lease: the instance, its token, and whether it was lost."""

    def __init__(self, keys: K.InstanceKeys, token: bytes, period_ms: int) -> None:
        self.keys = keys
        self.token = token
        self.period_ms = period_ms
        self.lost = threading.Event()
        #: set while a call that may free the lease is in flight, and after it freed it
        self.ending = threading.Event()

    @property
    def incarnation(self) -> bytes:
        """The incarnation of the instance this lease was taken in."""
        return self.token.split(b":", 1)[0]


def lease_ms() -> int:
    """The lease period a drain takes (``MOTION_LEASE_SECONDS``), in ms."""
    return int(get_settings().lease_seconds * 1000)


def begin(client: redis.Redis, keys: K.InstanceKeys, stats: str, most: int, budget: int) -> Any:
    """Take ``keys``' lease and read its first window (at most ``most`` updates and
    ``budget`` bytes) and, unless this process's copy is current, its state: the reply
    of ``lua/begin.lua``, in one round trip (``stats``: the counters' part)."""
    known = store.STATE_CACHE.version_of(keys.name)
    args = [lease_ms(), most, known, keys.name, store.nonce(), budget]
    script_keys = [keys.meta, keys.lease, stats, keys.inbox, keys.state]
    script_keys += [K.part(K.PENDING, keys.name), K.part(K.SWEEP, keys.name)]
    return scripts.run(client, "begin", [*script_keys, keys.parked, keys.nudge], args, fast=True)


def release(client: redis.Redis, lease: Lease, abandon: bool = False, hold: str = "") -> int:
    """Free the lease if the inbox is empty (or anyway, to ``abandon`` a failed drain,
    marking the instance held for the reason ``hold`` if given): 1 released, 0 more
    to do, 2 a timer of the instance is due (go through it), -1 lost."""
    keys = lease.keys
    args = [lease.token, keys.name, 1 if abandon else 0, hold]
    indexes = [K.part(index, keys.name) for index in (K.PENDING, K.SWEEP, K.HELD)]
    script_keys = [keys.meta, keys.lease, *indexes, keys.timers]
    lease.ending.set()
    result = int(scripts.run(client, "release", script_keys, args, fast=True))
    if abandon and hold and result == 1:  # held: a cluster lists its part of the held index
        directory.note(client, K.HELD, keys.name, 0)
    if result in (0, 2):  # updates arrived meanwhile, or a timer is due: still ours
        lease.ending.clear()
    return result


class Renewer:
    """The process's lease renewal thread; started on first use, one per process."""

    def __init__(self) -> None:
        self._held: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._pid = 0

    def hold(self, lease: Lease) -> None:
        """Keep ``lease`` renewed until :meth:`drop`."""
        with self._lock:
            if self._pid != os.getpid():  # first use, or a forked child: start our own thread
                self._pid = os.getpid()
                self._held = {}
                threading.Thread(target=self._loop, name="motion-lease", daemon=True).start()
            self._held[id(lease)] = lease

    def drop(self, lease: Lease) -> None:
        """Stop renewing ``lease``."""
        with self._lock:
            self._held.pop(id(lease), None)

    def _loop(self) -> None:
        from motion.floor.connection import get_redis

        while True:
            with self._lock:
                periods = [lease.period_ms for lease in self._held.values()]
            self._wake.wait(min(periods, default=3000) / 3000)
            with self._lock:  # after the wait: leases taken meanwhile are renewed now
                leases = list(self._held.values())
            started = store.now_ms()
            for lease in leases:
                try:
                    ok = scripts.run(
                        get_redis(),
                        "renew",
                        [lease.keys.lease, lease.keys.meta],
                        [lease.token, lease.period_ms],
                    )
                except Exception as exc:  # this thread must outlive any error
                    # Redis away: the commit check still protects state; keep trying.
                    log.warning("renewing the lease of %s failed: %s", lease.keys.name, exc)
                    continue
                with self._lock:
                    released = id(lease) not in self._held  # the drain ended meanwhile
                if not ok and not released and not lease.ending.is_set():
                    log.warning("lost the lease of %s (token %r)", lease.keys.name, lease.token)
                    lease.lost.set()
            elapsed = store.now_ms() - started
            if elapsed > 1000:
                log.warning("renewing %d leases took %d ms", len(leases), elapsed)


RENEWER = Renewer()


# -- lingering: a hot instance's drain takes its next updates directly (see linger.lua)
#: instances whose recent enqueue times this process remembers
REMEMBERED = 4096
#: an instance is hot when its last HOT_RUN updates came at least one per
#: MOTION_LINGER_MS on average: a steady stream, not one burst of a few producers (a
#: burst's updates are drained together anyway; lingering after it would only hold a
#: pool slot)
HOT_RUN = 8

_lock = threading.Lock()
_recent: OrderedDict[str, deque[float]] = OrderedDict()  # name -> recent enqueue times (s)
_hot: set[str] = set()


def observe(name: str, entries: list[bytes | None]) -> None:
    """Note the enqueue times of a window's ``entries``: is ``name`` hot?"""
    limit = get_settings().linger_ms / 1000
    if not limit:
        return
    times = [t for t in map(_enqueued_at, entries) if t is not None]
    if not times:
        return
    with _lock:
        recent = _recent.pop(name, None) or deque(maxlen=HOT_RUN)
        recent.extend(times)
        _recent[name] = recent
        if len(recent) == HOT_RUN and recent[-1] - recent[0] < HOT_RUN * limit:
            _hot.add(name)
        else:
            _hot.discard(name)
        while len(_recent) > REMEMBERED:
            old, _ = _recent.popitem(last=False)
            _hot.discard(old)


def _enqueued_at(entry: bytes | None) -> float | None:
    """When ``entry`` was enqueued, if it says (a corrupt one, the drain records as failed)."""
    try:
        return None if entry is None else entry_time(entry)
    except PayloadError:
        return None


@dataclass
class Lingering(Window):
    """The window after a commit that kept the lease to linger (its meta marked
    already): empty, with how long until the instance's next timer is due (ms; -1:
    none), which bounds the wait."""

    next_due_ms: int = -1
    #: the replies of the BLPOP and the window read sent with the commit
    #: (:func:`commit`), if they were: the linger's wait is over
    waited: tuple[Any, Any] | None = None


def lingering(next_due_ms: int = -1) -> Lingering:
    """The :class:`Lingering` window a lingering commit's reply (``commit.lua``) makes."""
    return Lingering([], [], next_due_ms)


def commit(
    client: redis.Redis, held: Lease, keys: list[str], args: list[Any], window: int, budget: int
) -> Any:
    """Run the ``commit`` script (``args``: its ARGV). A drain that lingers if it empties
    the inbox (ARGV[8] = 3, ARGV[5] the wait) sends the ``BLPOP`` on the nudge list and
    the next window's read with it, in one round trip (as ARGV[8] = 2 and
    :func:`linger` on a cluster, whose pipelines refuse scripts, and when commits wait
    for replicas). The reply is ``commit.lua``'s, but that a lingering one
    is ``[tag, 2, Lingering]`` (with the wait's outcome, if it was waited) and, with
    ARGV[8] = 3, ``[tag, 0, meta_flat, payloads...]`` (the read after it) when more
    updates wait."""
    if str(args[7]) != "3":
        return scripts.run(client, "commit", keys, args, fast=True)
    if is_cluster(client) or replication.wanted("commit"):  # (a replicated commit WAITs)
        args[7] = 2
        return _lingered(scripts.run(client, "commit", keys, args, fast=True))
    script, read = scripts.get("commit"), scripts.get("window")
    reply, nudged, after = fast_pipeline(
        client,
        [
            ("EVALSHA", script.sha, len(keys), *keys, *args),
            ("BLPOP", held.keys.nudge, int(args[4]) / 1000),
            ("EVALSHA", read.sha, 2, held.keys.meta, held.keys.inbox, window, "", budget),
        ],
    )
    if isinstance(reply, NoScriptError):  # a restarted Redis: it did not run
        args[7] = 2
        return _lingered(scripts.run(client, "commit", keys, args, fast=True))
    for failed in (reply, nudged):
        if isinstance(failed, Exception):
            raise failed
    if isinstance(after, NoScriptError):
        after = scripts.run(
            client, "window", [held.keys.meta, held.keys.inbox], [window, "", budget]
        )
    elif isinstance(after, Exception):
        raise after
    if not isinstance(reply, list):
        return reply
    if reply[1] == 2:
        return [reply[0], 2, Lingering([], [], int(reply[2]), (nudged, after))]
    return [reply[0], reply[1], *after]


def settle(
    client: redis.Redis, held: Lease, reply: Any, nonce: str, then_next: bool
) -> tuple[Any, Any]:
    """A commit's reply to go on with (``nonce``: the commit's own) and the version tag
    it left (``None`` when refused). A refused one (-1, -2) that ran after all
    (:func:`_ran_after_all`) goes on as committed: its tag, or with ``then_next``
    ``[tag, 1]`` if it released the lease and ``None`` (read the next window) if not."""
    if reply not in (-1, -2):
        return reply, reply[0] if isinstance(reply, list) else reply
    ran = _ran_after_all(client, held, nonce)
    if ran is None:
        return reply, None
    tag, still = ran
    if not then_next:
        return tag, tag
    return (None if still else [tag, 1]), tag


def _ran_after_all(client: redis.Redis, held: Lease, nonce: str) -> tuple[bytes, bool] | None:
    """Whether a refused commit ran after all, as ``(tag, whether the lease is still
    held)``, else ``None``. A connection lost after the commit ran but before its reply
    came makes the client send it again, and the second is refused (a duplicate, or a
    lease it released): the commit ran if the meta's ``committed`` is its ``nonce``
    (every commit writes its own). A refusal for another reason (a parked update
    dropped meanwhile, a cancel) leaves another there: the drain reads again."""
    pipe = client.pipeline(transaction=False)
    pipe.hmget(held.keys.meta, "tag", "committed")
    pipe.get(held.keys.lease)
    (tag, committed), lease = pipe.execute()
    if committed != nonce.encode():
        return None
    return tag, lease is not None and lease == held.token


def _lingered(reply: Any) -> Any:
    """A lingering commit's reply (ARGV[8] = 2) with its :class:`Lingering` window."""
    if isinstance(reply, list) and reply[1] == 2:
        return [reply[0], 2, lingering(int(reply[2]))]
    return reply


def hot(name: str) -> bool:
    """Whether a drain of ``name`` should linger before releasing its lease."""
    with _lock:
        return name in _hot


def linger(
    client: redis.Redis, held: Lease, window: int, budget: int, last: Window | None = None
) -> tuple[Window | None, bool]:
    """Linger for the next updates: ``(window, False)`` with every update that came
    meanwhile (maybe none: the enqueue's nudge raced a commit), ``(window, True)`` when
    a timer of the instance is due (the drain goes through it now, not after the
    linger), or ``(None, False)`` when nothing came in time (release now).
    ``last``: the drain's last window; a :class:`Lingering` one says the last commit
    marked the meta already (``commit.lua``, ARGV[8] = 2 or 3) and maybe waited.
    The wait is ``MOTION_LINGER_MS`` at most, less if a timer is due sooner; the
    ``BLPOP`` and the ``window`` read after it go in one round trip.
    Raises :class:`LookupError` if the lease is not ours any more."""
    keys = held.keys
    marked = last if isinstance(last, Lingering) else None
    next_due = marked.next_due_ms if marked is not None else -1
    limit = get_settings().linger_ms
    if marked is not None and marked.waited is not None:  # waited in the commit's round trip
        nudged, reply = marked.waited
        next_due = -1  # (the commit did not linger for a timer due within the wait)
    elif marked is None:
        args = [held.token, window, budget]
        script_keys = [keys.meta, keys.inbox, keys.nudge, keys.lease, keys.timers]
        reply = scripts.run(client, "linger", script_keys, args)
        if reply == -1:
            raise LookupError("lease lost")
        if reply[0] == 1:  # updates came before we marked the meta
            return Window(reply[1], reply[2:]), False
        if reply[0] == 2:  # a timer is due: go through it
            return Window(reply[1], []), True
        next_due = int(reply[1])
    if marked is None or marked.waited is None:
        wait = limit if next_due < 0 else max(1, min(limit, next_due))
        nudged, reply = _wait_then_read(client, keys, wait / 1000, window, budget)
    timer = nudged is None and 0 <= next_due <= limit  # the wait ended at a timer's due time
    if nudged is not None or reply[1:] or timer:
        return Window(reply[0], reply[1:]), timer and not reply[1:]
    with _lock:
        _hot.discard(keys.name)  # cold again until a steady stream comes again
        _recent.pop(keys.name, None)
    pipe = client.pipeline(transaction=False)
    pipe.hdel(keys.meta, "linger")
    pipe.delete(keys.nudge)
    pipe.execute()
    return None, False


def _wait_then_read(
    client: redis.Redis, keys: K.InstanceKeys, timeout: float, window: int, budget: int
) -> tuple[Any, list[Any]]:
    """``BLPOP`` the nudge list for up to ``timeout`` seconds, then read the window, in
    one round trip (two on a cluster, whose pipelines refuse scripts): the ``BLPOP``'s
    reply and the ``window`` script's."""
    args: list[Any] = [window, "", budget]
    if is_cluster(client):
        nudged = client.blpop([keys.nudge], timeout=timeout)
        return nudged, scripts.run(client, "window", [keys.meta, keys.inbox], args)
    script = scripts.get("window")
    nudged, reply = fast_pipeline(
        client,
        [("BLPOP", keys.nudge, timeout), ("EVALSHA", script.sha, 2, keys.meta, keys.inbox, *args)],
    )
    if isinstance(nudged, Exception):
        raise nudged
    if isinstance(reply, NoScriptError):  # a restarted Redis
        reply = scripts.run(client, "window", [keys.meta, keys.inbox], args)
    elif isinstance(reply, Exception):
        raise reply
    return nudged, reply
