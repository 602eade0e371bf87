"""An operator's view of instances by name: components, paged listings, summaries, writes.

What the dashboard shows and edits, with no component code needed: the component
names from the index that instance creation fills (:data:`motion.floor.keys.COMPONENTS`),
an instance's counters, and the per-flow counters of a component (a component's
instances, in pages, come from :mod:`motion.tools.names`).

:func:`write_state` is ``write_state`` by instance name: the change is enqueued in
the instance's inbox like any update, so it is applied in order with the updates
already pending, by whichever worker drains the instance. It uses the component's
serializer when its code is imported here, else the default (cloudpickle).

Uses the caller road (enqueue, wait) and the floor (inbox, scripts); no Celery.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

from motion.caller.enqueue import send_wakeup_sync, wakeup_to_push
from motion.caller.wait import Waiter
from motion.define.component import lookup, registered
from motion.floor import directory, drive
from motion.floor import keys as K
from motion.floor.connection import all_urls, client_for, get_redis, translate_errors
from motion.floor.errors import FlushTimeoutError, InstanceNotFoundError
from motion.floor.inbox import (
    WRITE_FLOW,
    Update,
    encode,
    enqueue_call,
    entry_header,
    new_token,
)
from motion.floor.parked import parse_member
from motion.floor.serde import DEFAULT_SERIALIZER

if TYPE_CHECKING:
    from motion.define.component import Component


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def components() -> list[str]:
    """Names of every component that ever had an instance (all shards), sorted."""
    names: set[str] = set()
    for url in all_urls():
        with translate_errors("listing components"):
            names |= {_text(n) for n in directory.components(client_for(url))}
    return sorted(names)


def flow_counts(component: str) -> dict[str, dict[str, int]]:
    """Per flow: ``{"applied": n, "failed": n, "discarded": n, "calls": n}`` (all shards)."""
    flows: dict[str, dict[str, int]] = {}
    for url in all_urls():
        with translate_errors(f"reading the counters of {component}"):
            raw = directory.counters(client_for(url), component)
        for key, value in raw.items():
            kind, _, flow = _text(key).partition(":")
            if flow:
                counts = flows.setdefault(flow, {})
                counts[kind] = counts.get(kind, 0) + int(value)
    return dict(sorted(flows.items()))


@dataclass
class Summary:
    """An instance's counters: committed version, last enqueued and applied updates."""

    name: str
    version: int
    seq: int
    applied: int
    failures: int
    extra: dict[str, str] = field(default_factory=dict)
    #: flow-control holds: ``{flow or "*": reason}`` (``pause``, ``failed:<seq>``...)
    holds: dict[str, str] = field(default_factory=dict)
    #: updates parked by flow control (behind the watermark, not applied yet)
    parked: int = 0

    @property
    def pending(self) -> int:
        """Updates enqueued and not applied yet (parked ones included)."""
        return max(self.seq - self.applied, 0) + self.parked


def summary(instance_name: str) -> Summary:
    """The counters of ``"Comp__id"``; :class:`InstanceNotFoundError` if it does not exist."""
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    with translate_errors(f"reading {instance_name}", instance_name):
        pipe = client.pipeline(transaction=False)
        pipe.hgetall(keys.meta)
        pipe.zcard(keys.failed)
        raw, failures = pipe.execute()
    meta = {_text(k): _text(v) for k, v in raw.items()}
    if "version" not in meta:
        raise InstanceNotFoundError(f"{instance_name} does not exist.")
    info = Summary(
        instance_name,
        int(meta["version"]),
        int(meta.get("seq") or 0),
        int(meta.get("applied") or 0),
        int(failures),
    )
    info.holds = {k[len("hold:") :]: v for k, v in meta.items() if k.startswith("hold:")}
    info.parked = sum(int(v) for k, v in meta.items() if k.startswith("parked:"))
    return info


@dataclass
class Pending:
    """An update waiting in an instance's inbox: its seq, flow and enqueue time (ms);
    ``parked``: held by a flow-control option (a pause, a debounce, a timer)."""

    seq: int
    flow: str
    enqueued_ms: int | None
    parked: bool = False


def pending(instance_name: str, limit: int = 50) -> list[Pending]:
    """The first ``limit`` updates of ``"Comp__id"`` not applied yet, in seq order: the
    parked ones (held by flow control, behind the watermark) and those after it (read
    from the entries' headers: no payload is deserialized)."""
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    with translate_errors(f"reading the inbox of {instance_name}", instance_name):
        pipe = client.pipeline(transaction=False)
        pipe.hmget(keys.meta, "applied", "seq")
        pipe.zrange(keys.parked, 0, limit - 1)
        (applied, seq), members = pipe.execute()
        held = {parse_member(m)[0] for m in members}
        first, last = int(applied or 0) + 1, min(int(seq or 0), int(applied or 0) + limit)
        seqs = sorted(held | set(range(first, last + 1)))[:limit]
        entries = client.hmget(keys.inbox, seqs) if seqs else []
    out = []
    for number, entry in zip(seqs, entries, strict=True):
        if entry is not None:  # discarded or applied meanwhile
            header = entry_header(entry if isinstance(entry, bytes) else entry.encode())
            out.append(Pending(number, header.flow, header.enqueued_ms, number in held))
    return out


def dead_letters(instance_name: str, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` failure records of ``"Comp__id"`` (``seq``, ``flow``, ``op``,
    ``error_type``, ``message``, ``traceback``, ``at``), newest first."""
    keys = K.InstanceKeys.of(instance_name)
    client = get_redis(instance_name)
    with translate_errors(f"reading the failures of {instance_name}", instance_name):
        raw = cast("list[bytes]", client.zrevrange(keys.failed, 0, limit - 1))
    records = []
    for item in raw:
        try:
            record = json.loads(item)
        except ValueError:
            continue  # not written by motion
        if isinstance(record, dict):
            records.append(record)
    return records


class _Codeless:
    """Stands in for a component whose code is not imported: only its serializer is used."""

    serializer = DEFAULT_SERIALIZER


@dataclass
class Written:
    """A write's position in the instance's queue, and the version once it is applied."""

    seq: int
    version: int | None


def write_state(instance_name: str, changes: dict[str, Any], timeout: float) -> Written:
    """Write ``changes`` into ``"Comp__id"``'s state, in order with its pending updates.

    Waits ``timeout`` seconds at most for the write to be applied; ``version`` is
    ``None`` if it was not applied by then (it stays queued and is applied later).

    Raises:
        InstanceNotFoundError: the instance does not exist.
        UpdateFailedError: the write was applied and failed (e.g. a payload the
            worker could not read).
        InstanceClearedError: the instance was cleared before the write was applied
            (the write went with that incarnation).
    """
    component, instance_id = K.split_instance_name(instance_name)
    code: Component | _Codeless = lookup(component) if component in registered() else _Codeless()
    keys = K.InstanceKeys.of(instance_name)
    # encode() reads only the serializer of what it is given
    entry = encode(cast("Component", code), instance_name, Update(WRITE_FLOW, dict(changes)))
    wakeup = wakeup_to_push(component, instance_id, WRITE_FLOW)
    call = enqueue_call(keys, entry, WRITE_FLOW, wakeup, token=new_token())
    client = get_redis(instance_name)
    with translate_errors(f"writing the state of {instance_name}", instance_name):
        reply = directory.run_enqueue(client, instance_name, *call)
    if int(reply[0]) <= 0:
        raise InstanceNotFoundError(f"{instance_name} does not exist (cleared meanwhile?).")
    seq = int(reply[0])
    if reply[1] == 1:
        send_wakeup_sync(component, instance_id, WRITE_FLOW, seq)
    waiter = Waiter(keys, component)
    waiter.watch(seq, reply[2])  # a seq of this incarnation: never a later one's
    try:
        drive.drive(waiter.steps(WRITE_FLOW, seq, timeout, own=True), client)
    except FlushTimeoutError:
        return Written(seq, None)
    return Written(seq, summary(instance_name).version)
