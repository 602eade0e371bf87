"""An instance's state history and retained updates, as the commit script stores them.

**History** (``Component(history=K)``, on by default): each commit that moves the
version pushes one record per version it makes onto the instance's ``history`` list
(newest first, the last K kept; ``lua/history.lua``). A record holds the version, its
tag, the seqs and flows that made it, the state keys it changed, Redis' clock at the
commit and, for each changed field, its encoded value *before* that version. The
values *as of* a version are found by walking back from the current state: the newest
record's new values are the current ones, and each older record's new values are the
next newer record's old values (or the current ones). So a kept version's full state
is rebuilt exactly (:func:`state_at`) from the current state and the records newer
than it, at the cost of one copy of each changed value per version; the oldest
version it can rebuild is the one before the oldest record.

**Retained updates** (``Component(retain_updates=N)``, off by default): the commit
keeps each applied update's inbox payload in ``replay:log1``; when that holds N, the
next commit moves ``log1``/``base1`` to ``log0``/``base0`` and copies the state (as
it was before the commit) into ``base1``. So at least the last N applied updates are
kept, at most 2N (plus one commit's), with ``base0`` the exact state before the oldest
(:func:`read_retained`). ``motion replay`` (:mod:`motion.tools.replay`) re-applies them.

These are the public readers (the dashboard uses them too). Floor; uses the floor
(errors, keys, serde, store).
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import redis

from motion.floor import keys as K
from motion.floor import store
from motion.floor.errors import VersionNotKeptError
from motion.floor.serde import DEFAULT_SERIALIZER, Serializer, load_stored

Fields = dict[bytes, bytes | None]


@dataclass
class HistoryRecord:
    """One version of an instance: what made it and the values it changed.

    ``before`` and ``after`` map each changed field to its encoded value before and as
    of this version (``None``: absent); :meth:`values` decodes ``after``.
    """

    name: str
    version: int
    tag: str
    seqs: list[int]
    flows: list[str]
    changed: list[str]
    at: datetime.datetime
    incarnation: bytes
    before: Fields
    after: Fields = field(default_factory=dict)
    serializer: Serializer = field(default=DEFAULT_SERIALIZER, repr=False, compare=False)

    def values(self) -> dict[str, Any]:
        """The changed keys' values as of this version, decoded (an absent key is left
        out; with ``save_state`` hooks, the saved value is under ``"<saved>"``)."""
        return self._decode(self.after)

    def values_before(self) -> dict[str, Any]:
        """The changed keys' values just before this version, decoded."""
        return self._decode(self.before)

    def _decode(self, raw: Fields) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f, value in raw.items():
            if value is None:
                continue
            key = "<saved>" if f == store.SAVED_FIELD else f.decode()
            bind = store.value_binding(self.name, f, self.incarnation)
            out[key] = load_stored(self.serializer, f"{key!r} of {self.name}", value, bind)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form (values left out: they are bytes)."""
        return {
            "version": self.version,
            "tag": self.tag,
            "seqs": self.seqs,
            "flows": self.flows,
            "changed": self.changed,
            "at": self.at.isoformat(),
        }


def _parse(name: str, raw: bytes, serializer: Serializer) -> HistoryRecord:
    inc, version, at, nonce, lens, rest = raw.split(b"\n", 5)
    header_text, _, blob = rest.partition(b"\n")
    header = json.loads(header_text)
    before: Fields = {}
    pos = 0
    for pair in lens.split(b",") if lens else []:
        name_len, value_len = (int(x) for x in pair.split(b":"))
        f = blob[pos : pos + name_len]
        pos += name_len
        if value_len < 0:
            before[f] = None
        else:
            before[f] = blob[pos : pos + value_len]
            pos += value_len
    return HistoryRecord(
        name=name,
        version=int(version),
        tag=f"{int(version)}.{inc.decode()}" + (f".{nonce.decode()}" if nonce else ""),
        seqs=[seq for first, last in header["seqs"] for seq in range(first, last + 1)],
        flows=list(header["flows"]),
        changed=list(header["changed"]),
        at=datetime.datetime.fromtimestamp(int(at) / 1000, datetime.timezone.utc),
        incarnation=inc,
        before=before,
        serializer=serializer,
    )


def _walk(
    client: redis.Redis, name: str, limit: int | None, serializer: Serializer
) -> tuple[int, bytes, dict[bytes, bytes], list[HistoryRecord]]:
    """The current version, incarnation and state, and the records (newest first) that
    continue back from it without a gap, each with its ``after`` values filled in."""
    keys = K.InstanceKeys.of(name)
    pipe = client.pipeline(transaction=False)
    pipe.hmget(keys.meta, "version", "inc")
    pipe.hgetall(keys.state)
    pipe.lrange(keys.history, 0, -1 if limit is None else max(limit, 1) - 1)
    (version, inc), state, raw = pipe.execute()
    if version is None:
        return 0, b"", {}, []
    current = int(version)
    values: dict[bytes, bytes | None] = dict(state)
    records: list[HistoryRecord] = []
    expect = current
    for item in raw:
        record = _parse(name, item, serializer)
        if record.incarnation != inc or record.version != expect:
            break  # another life's, or history was off for a while: no walking past it
        record.after = {f: values.get(f) for f in record.before}
        values.update(record.before)
        records.append(record)
        expect -= 1
    return current, inc, dict(state), records[: limit if limit is not None else None]


def read_history(
    client: redis.Redis,
    name: str,
    limit: int | None = None,
    serializer: Serializer = DEFAULT_SERIALIZER,
) -> list[HistoryRecord]:
    """The kept versions of instance ``name`` (``Comp__id``), newest first, at most
    ``limit``; ``[]`` for an instance that does not exist or keeps no history.

    Example::

        for record in read_history(get_redis(), "Summary__u1", limit=5):
            print(record.version, record.flows, record.changed, record.values())
    """
    return _walk(client, name, limit, serializer)[3]


def kept_versions(client: redis.Redis, name: str) -> tuple[int, int] | None:
    """``(oldest, newest)``: the versions of ``name`` :func:`state_at` can rebuild
    (``None`` if the instance does not exist)."""
    current, _, _, records = _walk(client, name, None, DEFAULT_SERIALIZER)
    if not current:
        return None
    return (records[-1].version - 1 if records else current), current


def state_at(client: redis.Redis, name: str, version: int) -> tuple[bytes, list[bytes]]:
    """The stored state of ``name`` as of ``version``: ``(incarnation, HGETALL-style
    flat list)``, rebuilt from the current state and the records newer than it.

    Raises:
        VersionNotKeptError: (a ``LookupError``) the version is older than the history
            keeps, newer than the current one, or the instance does not exist; the
            message and ``kept`` say which versions can be read.
    """
    current, inc, state, records = _walk(client, name, None, DEFAULT_SERIALIZER)
    kept = ((records[-1].version - 1) if records else current, current) if current else None
    if kept is None or not kept[0] <= version <= kept[1]:
        where = "it does not exist" if kept is None else f"it keeps versions {kept[0]}-{kept[1]}"
        raise VersionNotKeptError(
            f"{name} cannot show version {version}: {where} (raise the component's "
            f"history= to keep more).",
            kept,
        )
    values: dict[bytes, bytes | None] = dict(state)
    for record in records:
        if record.version <= version:
            break
        values.update(record.before)
    flat = [x for f, v in values.items() if v is not None for x in (f, v)]
    return inc, flat


@dataclass
class Retained:
    """The updates ``motion replay`` re-applies: ``base`` (HGETALL-style flat list of
    the stored state just before update ``first_seq``, of incarnation ``incarnation``)
    and the ``updates`` as ``(seq, inbox entry)`` pairs in the order they were applied
    (seq order, but for updates a flow-control option held and released later)."""

    name: str
    incarnation: bytes
    first_seq: int
    base: list[bytes]
    updates: list[tuple[int, bytes]]


def read_retained(client: redis.Redis, name: str) -> Retained | None:
    """The retained updates of ``name`` and the state before them (``None``: none kept)."""
    meta, base0, base1, log0, log1 = K.InstanceKeys.of(name).replay
    pipe = client.pipeline(transaction=False)
    pipe.hgetall(meta)
    pipe.hgetall(base0)
    pipe.hgetall(base1)
    pipe.lrange(log0, 0, -1)
    pipe.lrange(log1, 0, -1)
    info, first_base, second_base, older, newer = pipe.execute()
    if b"first1" not in info:
        return None
    if b"first0" in info:
        base, first_seq, entries = first_base, int(info[b"first0"]), older + newer
    else:
        base, first_seq, entries = second_base, int(info[b"first1"]), newer
    updates = []
    for entry in entries:
        seq, _, payload = entry.partition(b"\n")
        updates.append((int(seq), payload))
    flat = [x for kv in base.items() for x in kv]
    return Retained(name, info.get(b"inc", b""), first_seq, flat, updates)
