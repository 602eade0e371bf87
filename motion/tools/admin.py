"""Operator utilities: list, inspect, clear and copy instances; status and flush.

These are Motion's package-level helpers (``clear_instance``, ``inspect_state``,
``get_instances``, ``copy_db``; ``StateMigrator`` is in :mod:`motion.tools.migration`)
plus what the ``motion`` CLI shows (:func:`status`, :func:`flush_instance`). They
need no component code unless said otherwise, and they never use ``KEYS``: every
listing is a ``SCAN``, so they are safe on a production Redis with millions of keys.

Tool: uses the definition layer and the floor.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
import redis.asyncio

from motion.caller.wait import Waiter
from motion.define.component import Component, lookup, registered
from motion.floor import directory, drive, indexes, store
from motion.floor import keys as K
from motion.floor.connection import (
    all_urls,
    get_redis,
    queue_delete,
    translate_errors,
)
from motion.floor.connection import client_for as _client
from motion.floor.errors import (
    ConfigurationError,
    InstanceClearedError,
    InstanceNotFoundError,
    UpdateFailedError,
)
from motion.floor.inbox import (
    ALL_FLOWS,
    entry_time,
    parse_failures,
    target_field,
)
from motion.floor.redis_params import RedisParams
from motion.floor.serde import DEFAULT_SERIALIZER, Serializer, binding, load_stored, unseal
from motion.floor.settings import get_settings
from motion.tools import copying
from motion.worker import holds


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _scan(client: redis.Redis, pattern: str) -> Iterator[str]:
    for key in client.scan_iter(match=pattern, count=1000):
        yield _text(key)


def _serializer(component: str) -> Serializer:
    """The component's serializer when its code is loaded here, else cloudpickle."""
    return lookup(component).serializer if component in registered() else DEFAULT_SERIALIZER


def get_instances(component: str | Component) -> list[str]:
    """Ids of every instance of ``component``, sorted (found with ``SCAN``, never ``KEYS``);
    dev mode's copies (``DEV:<id>``) are left out.

    Example::

        get_instances("Summary")  # ["user-1", "user-2"]
    """
    name = component.name if isinstance(component, Component) else component
    found: set[str] = set()
    for url in all_urls():  # every shard, with MOTION_REDIS_SHARDS
        with translate_errors(f"listing instances of {name}"):
            client = _client(url)
            found |= {K.name_from_meta_key(key) for key in _scan(client, K.meta_pattern(name))}
    ids = (K.split_instance_name(n)[1] for n in found)
    return sorted(i for i in ids if not i.startswith(K.DEV_PREFIX))  # dev copies are not listed


def clear_instance(instance_name: str) -> bool:
    """Delete every key of ``"Comp__id"``: state, queue, failures, cached serve results.

    Pending updates are dropped with it. Returns ``True`` if the instance existed.
    Raises :class:`~motion.errors.InvalidInstanceIdError` (a ``ValueError``) for a
    name without ``__``.
    """
    component, instance_id = K.split_instance_name(instance_name)
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    with translate_errors(f"clearing {instance_name}", instance_name):
        # cache entries and dedup keys (the fixed keys are deleted by name anyway)
        cached = list(_scan(client, _glob_escape(keys.prefix) + "*"))
        pipe = client.pipeline(transaction=False)
        queue_delete(pipe, keys.all())
        for start in range(0, len(cached), 500):
            queue_delete(pipe, cached[start : start + 500])
        indexes.forget(pipe, instance_name, K.PENDING, K.SWEEP, K.HELD, K.TIMERS)
        pipe.zrem(K.names(component, instance_name), instance_id)
        deleted = pipe.execute()[0]
    store.STATE_CACHE.drop(instance_name)
    return bool(deleted)


def inspect_state(instance_name: str) -> dict[str, Any]:
    """The stored state of ``"Comp__id"`` as a dict (``load_state`` is not applied).

    Values are decoded with the component's serializer when its code is loaded in
    this process, else with cloudpickle. With ``save_state`` hooks the saved value
    is returned (a non-dict one under the key ``"<saved>"``).

    Raises:
        InstanceNotFoundError: (a ``ValueError``) if the instance does not exist.
    """
    component, _ = K.split_instance_name(instance_name)
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    with translate_errors(f"inspecting {instance_name}", instance_name):
        pipe = client.pipeline(transaction=False)
        pipe.hget(keys.meta, "inc")
        pipe.hgetall(keys.state)
        incarnation, raw = pipe.execute()
    if incarnation is None:
        raise InstanceNotFoundError(
            f"{instance_name} does not exist; `motion list {component}` lists its instances."
        )
    return decode_stored(instance_name, incarnation, raw)


def decode_stored(
    instance_name: str, incarnation: bytes, raw: dict[bytes, bytes]
) -> dict[str, Any]:
    """Stored state fields of ``"Comp__id"`` (of ``incarnation``) decoded as
    :func:`inspect_state` decodes them (the component's serializer if its code is
    loaded, else cloudpickle; ``load_state`` not applied)."""
    serializer = _serializer(K.split_instance_name(instance_name)[0])

    def load(field: bytes, what: str) -> Any:
        bind = store.value_binding(instance_name, field, incarnation)
        return load_stored(serializer, what, raw[field], bind)

    if store.SAVED_FIELD in raw:
        saved = load(store.SAVED_FIELD, f"saved state of {instance_name}")
        return dict(saved) if isinstance(saved, dict) else {"<saved>": saved}
    return {f.decode(): load(f, f"state key {f.decode()!r} of {instance_name}") for f in raw}


def _url(where: str | RedisParams) -> str:
    return where.url() if isinstance(where, RedisParams) else where


async def copy_db(src: str | RedisParams, dest: str | RedisParams) -> int:
    """Copy every motion key from one Redis to another (a coroutine, as in Motion).

    Keys are found with ``SCAN`` and copied with ``DUMP``/``RESTORE ... REPLACE``,
    keeping their TTLs. Returns the number of keys copied. Stop writers first for
    a consistent copy. Example: ``asyncio.run(copy_db(RedisParams(), "redis://new:6379/0"))``.
    Into a Redis Cluster (``redis+cluster://``), the global indexes are split into
    their per-slot parts and counters are added up, so each shard of
    ``MOTION_REDIS_SHARDS`` can be copied in turn (:mod:`motion.tools.copying`).
    """
    src_url, dest_url = _url(src), _url(dest)
    if src_url == dest_url:
        raise ConfigurationError("copy_db needs two different databases; src equals dest.")
    return await copying.copy_keys(src_url, dest_url)


# -- what `motion status` and `motion flush` show ------------------------------------------


@dataclass
class ComponentStatus:
    """Backlog, lag and counters of one component (what ``motion status`` prints)."""

    component: str
    pending_instances: int = 0
    pending_updates: int = 0
    #: seconds since the oldest update not yet applied was enqueued (0 with no backlog)
    lag_seconds: float = 0.0
    applied: int = 0
    failed: int = 0
    discarded: int = 0
    takeovers: int = 0
    #: per flow: ``{"applied": n, "failed": n, "discarded": n, "calls": n}``
    flows: dict[str, dict[str, int]] = field(default_factory=dict)
    #: instances a worker left pending, held: ``{name: "waiting for code: ..." or
    #: "state unreadable: ..."}`` (their updates are pending, not failed)
    held: dict[str, str] = field(default_factory=dict)
    #: pending instances whose wake-up the sweeper re-sent twice or more and no worker
    #: took: no running worker consumes the component's queues (has its code?)
    untaken: int = 0

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)


def _counters(status: ComponentStatus, raw: dict[bytes, bytes]) -> None:
    for key, value in raw.items():
        kind, _, flow = key.decode().partition(":")
        count = int(value)
        if kind == "takeovers":
            status.takeovers += count
        elif flow:
            counts = status.flows.setdefault(flow, {})
            counts[kind] = counts.get(kind, 0) + count  # summed over shards
            if kind in ("applied", "failed", "discarded"):
                setattr(status, kind, getattr(status, kind) + count)


def _enqueued_at(name: str, entry: bytes | None) -> float | None:
    """When an inbox entry of instance ``name`` was enqueued, or ``None`` if it cannot be
    read here."""
    if entry is None:
        return None
    if (stored := entry_time(entry)) is not None:
        return stored
    try:
        key = get_settings().signing_key
        body = unseal(entry.partition(b"\x00")[2], key, binding(name))
        return float(_serializer(K.split_instance_name(name)[0]).loads(body)[3])
    except Exception:  # a payload needing code this process lacks: use the index time
        return None


def status(components: Sequence[str] = ()) -> list[ComponentStatus]:
    """Backlog, lag, and applied/failed/discarded counts of each component (all by default),
    summed over every shard."""
    clients = [_client(url) for url in all_urls()]
    with translate_errors("reading motion status"):
        names = list(components) or sorted(
            {_text(n) for client in clients for n in directory.components(client)}
        )
        result = {name: ComponentStatus(name) for name in names}
        for client in clients:
            for name in names:
                _counters(result[name], directory.counters(client, name))
            pending = [
                (member.decode(), score)
                for member, score in indexes.scan_members(
                    client, K.PENDING, directory.parts(client, K.SWEEP, K.PENDING)
                )
                if member.decode().partition(K.SEPARATOR)[0] in result
            ]
            _backlog(client, result, pending)
            for name, reason in holds.listing(client).items():
                if (found := result.get(name.partition(K.SEPARATOR)[0])) is not None:
                    found.held[name] = f"{reason.get('held')}: {reason.get('error')}"
    return [result[name] for name in names]


def _backlog(
    client: redis.Redis, result: dict[str, ComponentStatus], pending: list[tuple[str, float]]
) -> None:
    seconds, micros = client.time()  # Redis' clock: enqueue times and scores are by it
    now = int(seconds) + int(micros) / 1e6
    for start in range(0, len(pending), 500):
        chunk = pending[start : start + 500]
        pipe = client.pipeline(transaction=False)
        for name, _ in chunk:
            pipe.hmget(K.InstanceKeys.of(name).meta, "applied", "seq", "sweeps", "held")
        counters = pipe.execute()
        waiting = []
        for (name, score), (applied, seq, sweeps, held) in zip(chunk, counters, strict=True):
            behind = int(seq or 0) - int(applied or 0)
            if behind > 0 and int(sweeps or 0) >= 2 and held is None:
                result[name.partition(K.SEPARATOR)[0]].untaken += 1
            if behind > 0:
                waiting.append((name, score, int(applied or 0) + 1, behind))
        pipe = client.pipeline(transaction=False)
        for name, _, oldest, _ in waiting:
            pipe.hget(K.InstanceKeys.of(name).inbox, str(oldest))
        for (name, score, _, behind), entry in zip(waiting, pipe.execute(), strict=True):
            status = result[name.partition(K.SEPARATOR)[0]]
            status.pending_instances += 1
            status.pending_updates += behind
            since = _enqueued_at(name, entry) or score / 1000
            status.lag_seconds = max(status.lag_seconds, round(now - since, 3))


def flush_instance(instance_name: str, flow: str = ALL_FLOWS, timeout: float | None = None) -> int:
    """Wait until every update of ``"Comp__id"`` enqueued so far is applied; needs no code.

    With ``flow``, waits for that flow's last update (and so for everything
    before it). Returns the number of the last update waited for.

    Raises:
        InstanceNotFoundError: if the instance does not exist.
        InstanceClearedError: if it is cleared (or lost by Redis) first: the updates
            waited for went with that incarnation.
        FlushTimeoutError: if ``timeout`` seconds pass first; with no timeout,
            :class:`NoWorkerError` once no worker for the component was seen, or the
            instance stayed held, for ``MOTION_WORKER_GRACE_SECONDS``.
        UpdateFailedError: naming each update (of ``flow``, unless ``*ALL*``) that
            was pending when the call started and failed.
    """
    component, _ = K.split_instance_name(instance_name)
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    action = f"flushing {instance_name}"
    with translate_errors(action, instance_name):
        meta = client.hmget(keys.meta, "applied", target_field(flow), "version", "inc")
        applied, target, created, inc = meta
        if created is None:
            raise InstanceNotFoundError(f"{instance_name} does not exist.")
        first, last = int(applied or 0) + 1, int(target or 0)
    # a handle's wait, in the incarnation the flush began in (it reports no failure:
    # those of every caller are read below)
    wait = Waiter(keys, component).steps(flow, last, timeout, report=False, incarnation=inc)
    drive.drive(wait, client)
    with translate_errors(action, instance_name):
        if client.hget(keys.meta, "inc") != inc:
            raise InstanceClearedError(
                f"{instance_name} was cleared (or lost by Redis) while the flush waited "
                f"for update #{last}; the updates pending then went with it."
            )
        records: list[Any] = client.zrangebyscore(keys.failed, first, last) if last >= first else []
    failures = parse_failures(instance_name, records, flow)
    if failures:
        raise UpdateFailedError(failures)
    return last
