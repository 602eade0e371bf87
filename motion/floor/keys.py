"""Every Redis key name motion uses, in one place.

An instance ``Comp__id`` owns a handful of keys that all carry ``{Comp__id}`` as a
Redis Cluster hash tag, so they live in one slot and one Lua script may touch them
all. The few global keys (the pending index, per-component counters, the sweeper
lock) are listed at the bottom.

On a Redis Cluster (``MOTION_REDIS_URL=redis+cluster://...``) each global index a
script touches together with an instance's keys is split into one part per hash slot
(:func:`part`: ``motion:pending:{<tag of the instance's slot>}``), so no script crosses
slots; readers go over :func:`parts`. On a single Redis :func:`part` is the plain key.

Per instance:

========  =====  =============================================================
key       type   contents
========  =====  =============================================================
state     hash   one field per state key, each value serialized on its own
meta      hash   ``inc`` (the incarnation id: 32 random hex digits, new each time
                 the instance is created), ``tag`` (``<version>.<inc>[.<nonce>]``,
                 what caches compare), ``version``, ``seq`` (last enqueued),
                 ``applied`` (last applied seq), ``fence`` (last lease token),
                 ``holder`` (token of the lease holder while draining), ``wake``
                 (ms time a wake-up was sent), ``sweeps`` (wake-ups the sweeper
                 re-sent that no worker took yet), ``last:<flow>`` (last seq of a
                 flow), ``pending:<flow>``
inbox     hash   ``seq -> payload`` of updates not yet applied
lease     str    the fencing token of the worker draining the inbox (with a TTL):
                 ``<inc>:<fence>:<nonce>``
claim     str    the caller creating the instance (running ``init_state``; a TTL)
failed    zset   failure records (JSON) scored by seq: dead letters, the newest 1,000
                 kept (``failed_dropped`` in meta counts the older ones dropped)
dead      hash   ``seq -> inbox entry`` of each dead letter (so it can be retried; the
                 commit that records the failure copies it), and ``to:<seq> -> seq``:
                 where a retried dead letter was re-enqueued (its ticket follows it)
cache     hash   serve-result cache, ``tag:flow:digest -> expiry|entry`` (``tag``: the
                 state's version tag); the commit that moves the version deletes it;
                 expires ``cache_ttl`` after its last write
history   list   the last K versions (``Component(history=K)``), newest first: each
                 record holds the version, its seqs and flows, the changed keys and
                 their values *before* that version (see :mod:`motion.floor.history`)
replay:*  mixed  with ``retain_updates=N``: ``replay:meta`` (hash), ``replay:base0``
                 and ``replay:base1`` (copies of the state, hashes), ``replay:log0``
                 and ``replay:log1`` (lists of ``seq\npayload``), see
                 :mod:`motion.floor.history`
dedup:*   hash   ``token -> seq`` of recent enqueues, so a client that retries an
                 enqueue after a lost reply enqueues once, and ``\0inc``: the
                 incarnation they belong to; one key per :data:`DEDUP_SECONDS`
                 period, each expiring after two periods
parked    zset   updates held by a flow-control option (debounce, pause, timer,
                 a flow paused on a failure), member ``<seq>:<flow>``, scored by
                 seq; the watermark ``applied`` has passed them, their payloads
                 stay in the inbox (see :mod:`motion.floor.parked`)
timers    zset   ``flow -> ms`` (Redis' clock) when the flow's parked updates are
                 due: a debounce's fire time or a submitted update's due time
========  =====  =============================================================

Meta fields of flow control: ``hold:*`` (the whole instance paused), ``hold:<flow>``
(``pause`` or ``failed:<seq>``), ``parked:<flow>`` (how many of the flow are parked),
``dfirst:<flow>`` (enqueue ms of the first update of a debounce in progress).

Floor; uses the floor (errors).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from motion.floor import slots
from motion.floor.errors import InvalidInstanceIdError
from motion.floor.settings import get_settings

PREFIX = "motion"
SEPARATOR = "__"

#: Sorted set of instance names with updates not yet applied, scored by the ms
#: time each became pending (its oldest unapplied update was enqueued then or later).
PENDING = f"{PREFIX}:pending"
#: The same names, scored by when the sweeper should look at each next; a pass
#: reads only the members due, so it costs O(due), not O(instances).
SWEEP = f"{PREFIX}:sweep"
#: instances a worker left pending because it could not go on (waiting for code, or a
#: state it cannot read), scored by when; the meta field ``held`` says why
HELD = f"{PREFIX}:held"
#: Lists of idle instances with updates to apply, one per wake-up queue
#: (``motion:ready:<queue>``, one part per hash slot on a cluster: :func:`part`), each
#: with a counter ``<list>:n`` of the ``motion.ready`` messages out for it (see
#: ``lua/ready_lib.lua``).
READY = f"{PREFIX}:ready:"
#: String key with a TTL: whoever sets it runs this round of the sweeper.
SWEEPER_LOCK = f"{PREFIX}:sweeper:lock"
#: Set of component names that ever had an instance (for ``motion status``).
COMPONENTS = f"{PREFIX}:components"
#: String: the secret that signs HTTP tokens when none is configured; set once
#: (``SET NX``) by the first web server that needs it, so replicas agree.
HTTP_TOKEN_SECRET = f"{PREFIX}:http:token-secret"
#: Dev mode (``MOTION_ENV=dev``): a handle on instance ``id`` works on the dev
#: instance ``DEV:id`` (keys ``motion:{Comp__DEV:id}:...``), so every worker, whatever
#: its own environment, applies a dev update to the dev keys: the wake-up names it.
DEV_PREFIX = "DEV:"
#: An enqueue's token is remembered for between one and two of these periods:
#: far longer than a client's retries of a command whose reply was lost.
DEDUP_SECONDS = 30


#: The due index: instance names scored by the ms (Redis' clock) of each one's
#: earliest timer (its ``timers`` key's lowest score); split per slot on a cluster.
TIMERS = f"{PREFIX}:timers"


def timers_index(name: str) -> str:
    """The part of the due index (:data:`TIMERS`) the instance ``name`` is in."""
    return part(TIMERS, name)


def workers(component: str) -> str:
    """Sorted set of the workers that can apply ``component``'s updates, scored by the
    ms time (Redis' clock) each last announced itself."""
    return f"{PREFIX}:workers:{{{component}}}"


def registered(component: str) -> str:
    """String key (no expiry): Redis' ms time a worker able to apply ``component``'s
    updates last announced itself; its existence means one ever did (the producer checks)."""
    return f"{PREFIX}:registered:{{{component}}}"


def flows(component: str) -> str:
    """Set (no expiry) of the flows with update ops that workers with ``component``'s code
    announced; the producer warns about a flow not in it (it waits for such a worker)."""
    return f"{PREFIX}:flows:{{{component}}}"


def stats(component: str, name: str | None = None) -> str:
    """Hash of counters for one component: ``applied:<flow>``, ``failed:<flow>``...

    With ``name`` (an instance of it): the part that instance's scripts count in
    (:func:`part`); readers sum :func:`parts` of ``stats(component)``.
    """
    key = f"{PREFIX}:stats:{component}"
    return key if name is None else part(key, name)


def part(index: str, name: str, cluster: bool | None = None) -> str:
    """The part of the global ``index`` (``PENDING``, ``SWEEP``, ``HELD``,
    ``COMPONENTS``, a ``stats`` key, or any index named per instance) that instance
    ``name``'s scripts touch.

    On a single Redis: ``index`` itself. On a cluster: ``index:{tag}``, where ``tag``
    hashes to the slot of the instance's keys, so a script may touch both.
    ``cluster`` says which (default: whether this process's Redis is a cluster).
    """
    if not (get_settings().redis_cluster if cluster is None else cluster):
        return index
    return part_at(index, tag_of(name))


def tag_of(name: str) -> str:
    """The slot tag of instance ``name``'s parts on a cluster (``part`` is ``index:{tag}``)."""
    return slots.tag(slots.key_slot(InstanceKeys.of(name).meta))


def part_at(index: str, tag: str) -> str:
    """The part of the global ``index`` with slot tag ``tag`` (a cluster's)."""
    return f"{index}:{{{tag}}}"


def directory(index: str) -> str:
    """Sorted set, on a cluster only: the slot tags of the non-empty parts of the global
    ``index``, each scored at most the lowest score in its part (see
    :mod:`motion.floor.directory`); a key of its own slot."""
    return f"{PREFIX}:directory:{{{index}}}"


#: String key with a TTL: whoever sets it runs the full pass that re-lists parts a
#: directory lost (:func:`motion.floor.directory.rebuild_if_due`).
DIRECTORY_LOCK = f"{PREFIX}:directory:lock"


def parts(index: str) -> list[str]:
    """Every part of the global ``index``: ``[index]`` on a single Redis, one key per
    hash slot (16,384) on a cluster."""
    if not get_settings().redis_cluster:
        return [index]
    return list(_cluster_parts(index))


@cache
def _cluster_parts(index: str) -> tuple[str, ...]:
    return tuple(f"{index}:{{{t}}}" for t in slots.all_tags())


def names(component: str, name: str | None = None) -> str:
    """Sorted set of ``component``'s instance ids, each scored 0, so ``ZRANGEBYLEX`` pages
    them in id order and finds an id prefix in O(log n + page); the ``init`` script adds
    an id, clearing the instance removes it. On a cluster it is split per slot like the
    other indexes: with ``name``, the part that instance's scripts touch; readers merge
    :func:`parts` of ``names(component)``."""
    if not get_settings().redis_cluster:
        return f"{PREFIX}:names:{{{component}}}"
    key = f"{PREFIX}:names:{component}"
    return key if name is None else part(key, name)


def names_ready(component: str) -> str:
    """String key: set once :func:`names` also holds the instances created before the
    index existed (one ``SCAN`` pass, see :mod:`motion.tools.names`)."""
    return f"{PREFIX}:names-ready:{{{component}}}"


#: per-minute counters are kept at least this long (seconds)
SERIES_SECONDS = 48 * 3600


def series(component: str, at_ms: int, name: str | None = None) -> str:
    """Hash of ``component``'s per-minute counters written in the hour ``at_ms`` falls
    in (the commit script's fields ``<minute>:<counter>``, minute = Redis' ms clock //
    60,000); it expires :data:`SERIES_SECONDS` plus an hour after its last write. On a
    cluster split per slot: with ``name``, the part that instance's commit writes."""
    hour = at_ms // 3_600_000
    if not get_settings().redis_cluster:
        return f"{PREFIX}:minutes:{{{component}}}:{hour}"
    key = f"{PREFIX}:minutes:{component}:{hour}"
    return key if name is None else part(key, name)


def instance_name(component: str, instance_id: str) -> str:
    """The ``Comp__id`` name Motion uses for an instance."""
    return f"{component}{SEPARATOR}{instance_id}"


def dev_id(instance_id: str) -> str:
    """The id of the dev copy of instance ``instance_id`` (dev mode)."""
    return DEV_PREFIX + instance_id


def public_id(instance_id: str) -> str:
    """The id ops and users see: ``"DEV:x"`` -> ``"x"`` (a dev copy is still instance x)."""
    return instance_id[len(DEV_PREFIX) :] if instance_id.startswith(DEV_PREFIX) else instance_id


def split_instance_name(name: str) -> tuple[str, str]:
    """Split ``Comp__id`` into ``("Comp", "id")``."""
    component, sep, instance_id = name.partition(SEPARATOR)
    if not sep or not component or not instance_id:
        raise InvalidInstanceIdError(
            f"{name!r} is not an instance name: expected 'Component__instance_id'."
        )
    return component, instance_id


@dataclass(frozen=True)
class InstanceKeys:
    """The Redis keys of one instance."""

    name: str
    state: str
    meta: str
    inbox: str
    lease: str
    failed: str
    dead: str
    cache: str
    claim: str
    #: a list the enqueue pushes the new seq onto when the lease holder lingers for it
    nudge: str
    #: a list the commit that moves ``applied`` on pushes an item onto for each waiting
    #: flush (``lua/watch.lua``), which BLPOPs it instead of sleeping
    woke: str
    parked: str
    timers: str
    cache_prefix: str
    prefix: str
    history: str
    replay: tuple[str, str, str, str, str]

    @classmethod
    def of(cls, name: str) -> InstanceKeys:
        """Keys of the instance called ``name`` (``Comp__id``)."""
        base = f"{PREFIX}:{{{name}}}"
        return cls(
            name=name,
            state=f"{base}:state",
            meta=f"{base}:meta",
            inbox=f"{base}:inbox",
            lease=f"{base}:lease",
            failed=f"{base}:failed",
            dead=f"{base}:dead",
            cache=f"{base}:cache",
            claim=f"{base}:claim",
            nudge=f"{base}:nudge",
            woke=f"{base}:woke",
            parked=f"{base}:parked",
            timers=f"{base}:timers",
            cache_prefix=f"{base}:cache:",  # string entries of earlier releases
            prefix=f"{base}:",
            history=f"{base}:history",
            replay=(
                f"{base}:replay:meta",
                f"{base}:replay:base0",
                f"{base}:replay:base1",
                f"{base}:replay:log0",
                f"{base}:replay:log1",
            ),
        )

    def all(self) -> list[str]:
        """Every fixed key of the instance (cache and dedup keys are matched by prefix)."""
        return [
            *(self.state, self.meta, self.inbox, self.lease, self.failed, self.dead),
            *(self.cache, self.claim, self.nudge, self.woke, self.parked, self.timers),
            *self.past(),
        ]

    def past(self) -> list[str]:
        """The keys the commit keeps the past in: ``history``, then the five ``replay:*``."""
        return [self.history, *self.replay]

    def dedup(self, now_ms: int) -> str:
        """The dedup key of the :data:`DEDUP_SECONDS` period that ``now_ms`` falls in."""
        return f"{self.prefix}dedup:{now_ms // (DEDUP_SECONDS * 1000)}"


def meta_pattern(component: str) -> str:
    """A SCAN pattern matching the meta key of every instance of ``component``."""
    escaped = "".join("\\" + c if c in "*?[]\\" else c for c in component)
    return f"{PREFIX}:{{{escaped}{SEPARATOR}*}}:meta"


def name_from_meta_key(key: str) -> str:
    """Recover ``Comp__id`` from a meta key found by SCAN."""
    start = len(PREFIX) + 2
    return key[start : -len("}:meta")]
