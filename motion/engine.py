"""The drain: apply an instance's pending updates in order, exactly once as state changes.

Called by the ``motion.apply`` task. It takes the instance's lease (or returns at
once if another worker holds it: the holder drains everything), reads the inbox
in windows, runs the update ops (applying discard policies and coalescing batch
ops), and commits each update, or each coalesced group, with one Lua script that
checks the lease token and the sequence. It releases the lease only when the
inbox is empty.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import threading
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import redis

from motion import keys as K
from motion import lease as leases
from motion import scripts, store
from motion.component import Component, DiscardPolicy, Op
from motion.connection import get_redis
from motion.errors import MotionError, PayloadError, UnknownFlowError, UpdateResultError
from motion.inbox import MIGRATE_FLOW, WRITE_FLOW, Update, decode, entry_flow, failure_record
from motion.props import Properties, State
from motion.settings import get_settings

log = logging.getLogger("motion.engine")

#: most inbox entries read per round trip
WINDOW = 64
#: most pending updates one call of a batch op receives (a longer run is split)
BATCH_LIMIT = 10_000
#: quick updates in a window are committed together for at most this long (seconds)
COMMIT_BUDGET = 0.02
_SPECIAL = (WRITE_FLOW, MIGRATE_FLOW)


@dataclass
class DrainReport:
    """What one drain did: the task's result, which Flower shows.

    ``seqs`` is the range of updates the drain went through (``"4-17"``): updates
    that arrive while an instance is being drained are applied by the task already
    draining it, and show here rather than as tasks of their own.
    """

    instance: str
    applied: int = 0
    failed: int = 0
    discarded: int = 0
    seqs: str | None = None
    #: "busy" (another worker drains: it applies this update too), "idle" (already
    #: applied), "missing" (no such instance) or "lease lost"
    skipped: str | None = None
    first: int = field(default=0, repr=False)
    last: int = field(default=0, repr=False)

    def covered(self, first: int, last: int) -> None:
        """Note that updates ``first``..``last`` were committed (applied, failed or discarded)."""
        self.first = first if not self.first else min(self.first, first)
        self.last = max(self.last, last)
        self.seqs = f"{self.first}-{self.last}" if self.first != self.last else str(self.last)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        hidden = ("first", "last")
        return {k: v for k, v in self.__dict__.items() if v is not None and k not in hidden}


@dataclass
class _Outcome:
    first: int
    last: int
    state: State
    changes: dict[str, Any] = field(default_factory=dict)
    fields: list[Any] = field(default_factory=list)  # encoded changes, ready for the commit
    replace: bool = False
    bumps: int = 0  # state changes in this outcome (the version advances by this much)
    stats: Counter[str] = field(default_factory=Counter)
    meta: Counter[str] = field(default_factory=Counter)
    failures: list[tuple[int, str]] = field(default_factory=list)

    def merge(self, later: _Outcome) -> _Outcome:
        """This outcome followed by ``later`` (the next seqs), as one commit."""
        if later.replace or self.replace:
            raise ValueError("a migration is committed on its own")
        fields = dict(zip(self.fields[::2], self.fields[1::2], strict=True))
        fields.update(zip(later.fields[::2], later.fields[1::2], strict=True))
        self.fields = [x for kv in fields.items() for x in kv]
        self.changes.update(later.changes)
        self.bumps += later.bumps
        self.last, self.state = later.last, later.state
        self.stats.update(later.stats)
        self.meta.update(later.meta)
        self.failures += later.failures
        return self


def drain(component: Component, instance_id: str) -> DrainReport:
    """Drain the inbox of ``component``'s instance ``instance_id`` if no one else is."""
    settings = get_settings()
    client = get_redis()
    keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))
    period = int(settings.lease_seconds * 1000)
    report = DrainReport(keys.name)
    # one round trip: the lease, the first window and (unless our copy is current) the state
    reply = scripts.run(
        client,
        "begin",
        [
            keys.meta,
            keys.lease,
            K.stats(component.name),
            keys.inbox,
            keys.state,
            K.PENDING,
            K.SWEEP,
        ],
        [period, WINDOW, store.STATE_CACHE.version_of(keys.name), keys.name],
    )
    token = int(reply[0])
    if token <= 0:
        report.skipped = {0: "busy", -1: "missing", -2: "idle"}[token]
        return report
    held = leases.Lease(keys, token, period)
    leases.RENEWER.hold(held)
    try:
        state = _parse_state(client, component, instance_id, keys, reply[2])
        window = _Window(reply[1], reply[3:])
        _drain_held(component, instance_id, client, held, state, window, report)
    except _Stop as stop:
        report.skipped = stop.reason
    except Exception as exc:
        # e.g. a state this worker cannot deserialize: the updates stay pending, and
        # the lease goes now, not in a lease period, for another worker to try
        log.warning("draining %s failed (%s); its updates stay pending", keys.name, exc)
        with contextlib.suppress(redis.RedisError):
            leases.release(client, held, abandon=True)
        raise
    finally:
        leases.RENEWER.drop(held)
    return report


@dataclass
class _Window:
    """The next updates to apply (``entries`` from seq ``applied + 1``) and the meta hash."""

    meta_flat: list[bytes]
    entries: list[bytes | None]

    def first_seq(self) -> int:
        meta = dict(zip(self.meta_flat[::2], self.meta_flat[1::2], strict=True))
        return int(meta[b"applied"]) + 1

    def pending(self) -> dict[str, int]:
        """Updates not yet applied, per flow (the discard policies count them)."""
        return {
            k.decode()[len("pending:") :]: int(v)
            for k, v in zip(self.meta_flat[::2], self.meta_flat[1::2], strict=True)
            if k.startswith(b"pending:")
        }


class _Stop(Exception):
    """The drain must stop: ``reason`` goes in the report ("lease lost")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _drain_held(
    component: Component,
    instance_id: str,
    client: redis.Redis,
    held: leases.Lease,
    state: State,
    window: _Window | None,
    report: DrainReport,
) -> None:
    """Apply windows until the last commit released the lease (the inbox was empty)."""
    keys = held.keys
    while True:
        if held.lost.is_set():
            raise _Stop("lease lost")
        if window is None:  # after a refused commit: read the window again
            reply = scripts.run(client, "window", [keys.meta, keys.inbox], [WINDOW])
            window = _Window(reply[0], reply[1:])
        if not window.entries:
            released = leases.release(client, held)
            if released < 0:
                raise _Stop("lease lost")
            if released == 1:
                return
            window = None  # updates arrived after the window was read
            continue
        _gather_batch(component, client, keys, window)
        result = _apply_window(component, instance_id, client, held, state, window, report)
        if result is None:  # released: the inbox was empty after the last commit
            return
        state, window = result


def _gather_batch(
    component: Component, client: redis.Redis, keys: K.InstanceKeys, window: _Window
) -> None:
    """Read on while a full window ends in a run of a batch op, so one call gets the
    whole run (up to :data:`BATCH_LIMIT`), not one window's share of it."""
    while WINDOW <= len(window.entries) < BATCH_LIMIT and len(window.entries) % WINDOW == 0:
        flow = _batch_flow(component, window.entries[-1])
        if flow is None:
            return
        start = window.first_seq() + len(window.entries)
        reply = scripts.run(client, "window", [keys.meta, keys.inbox], [WINDOW, start])
        window.entries.extend(reply[1:])
        if len(reply) - 1 < WINDOW:
            return


def _batch_flow(component: Component, entry: bytes | None) -> str | None:
    """The flow of ``entry`` if a batch op applies it, else ``None``."""
    try:
        flow = entry_flow(entry) if entry is not None else None
    except PayloadError:
        return None
    if flow is None or flow in _SPECIAL or not any(op.batch for op in component.update_ops(flow)):
        return None
    return flow


def _apply_window(
    component: Component,
    instance_id: str,
    client: redis.Redis,
    held: leases.Lease,
    state: State,
    window: _Window,
    report: DrainReport,
) -> tuple[State, _Window | None] | None:
    """Apply one window, committing consecutive updates together for up to ``COMMIT_BUDGET``
    seconds (one round trip for many quick updates).

    The window's last commit also releases the lease when the inbox is empty
    (returns ``None``) or brings the next window; otherwise returns the state after
    this window and the next window (``None``: read it again).
    """
    keys = held.keys
    pending = window.pending()
    groups = _groups(component, window.first_seq(), window.entries)
    acc: _Outcome | None = None
    started = time.monotonic()
    for index, group in enumerate(groups):
        special = _is_migration(group)
        if acc is not None and special:
            if _commit(client, held, component.name, acc, report) is None:
                return _fresh_state(client, component, instance_id, keys), None
            acc, started = None, time.monotonic()
        outcome = _apply(component, instance_id, state, group, pending)
        for flow_field, delta in outcome.meta.items():
            flow = flow_field[len("pending:") :]
            pending[flow] = pending.get(flow, 0) + delta
        acc = outcome if acc is None else acc.merge(outcome)
        state = outcome.state
        if index == len(groups) - 1:
            break
        if outcome.failures or special or time.monotonic() - started > COMMIT_BUDGET:
            if _commit(client, held, component.name, acc, report) is None:
                return _fresh_state(client, component, instance_id, keys), None
            acc, started = None, time.monotonic()
            if outcome.failures:  # an op may have mutated shared values: start clean
                state = _fresh_state(client, component, instance_id, keys)
    assert acc is not None  # every window has at least one group
    reply = _commit(client, held, component.name, acc, report, then_next=True)
    if reply is None:
        return _fresh_state(client, component, instance_id, keys), None
    if reply[1] == 1:
        return None
    if acc.failures:  # an op may have mutated shared values: start clean
        state = _fresh_state(client, component, instance_id, keys)
    return state, _Window(reply[2], reply[3:])


def _is_migration(group: list[tuple[int, bytes | None]]) -> bool:
    entry = group[0][1]
    return entry is not None and entry.startswith(MIGRATE_FLOW.encode() + b"\x00")


def _parse_state(
    client: redis.Redis, component: Component, instance_id: str, keys: K.InstanceKeys, reply: Any
) -> State:
    """The state from a read reply (``begin``'s or ``read``'s), reading again if needed."""
    try:
        loaded = store.parse_read(component, instance_id, reply)
    except store.StaleCopy:  # our copy was evicted meanwhile
        loaded = None
    if loaded is None:
        return _fresh_state(client, component, instance_id, keys)
    return loaded[1]


def _fresh_state(
    client: redis.Redis, component: Component, instance_id: str, keys: K.InstanceKeys
) -> State:
    """The committed state, read in full (the local copy is dropped first)."""
    store.STATE_CACHE.drop(keys.name)
    reply = scripts.run(client, "read", [keys.meta, keys.state], [""])
    loaded = store.parse_read(component, instance_id, reply)
    if loaded is None:
        raise MotionError(f"{keys.name} has pending updates but no state; was it cleared?")
    return loaded[1]


def _groups(
    component: Component, first_seq: int, entries: list[bytes | None]
) -> list[list[tuple[int, bytes | None]]]:
    """Split a window into commit units: one entry each, or runs of a batch flow."""
    groups: list[list[tuple[int, bytes | None]]] = []
    prev_flow: str | None = None
    for i, entry in enumerate(entries):
        seq = first_seq + i
        flow = _batch_flow(component, entry)
        if flow is not None and groups and prev_flow == flow and len(groups[-1]) < BATCH_LIMIT:
            groups[-1].append((seq, entry))
        else:
            groups.append([(seq, entry)])
        prev_flow = flow
    return groups


def _apply(
    component: Component,
    instance_id: str,
    state: State,
    group: list[tuple[int, bytes | None]],
    pending: dict[str, int],
) -> _Outcome:
    out = _Outcome(group[0][0], group[-1][0], state)
    name = K.instance_name(component.name, instance_id)
    decoded: list[tuple[int, Update]] = []
    flow = "?"
    for seq, entry in group:
        try:
            if entry is None:
                raise PayloadError(f"update #{seq} is missing from the inbox")
            flow = entry_flow(entry)
            decoded.append((seq, decode(component, entry)))
        except MotionError as exc:
            out.failures.append((seq, failure_record(seq, flow, "-", exc)))
            out.stats[f"failed:{flow}"] += 1
        if flow != "?":
            out.meta[f"pending:{flow}"] -= 1
    if not decoded:
        return out
    working = state.copy()
    try:
        _run_ops(component, instance_id, working, decoded, pending, out)
        if out.changes or out.replace:
            whole = component.save_state_func is not None
            out.fields = store.encode_changes(component, name, working if whole else out.changes)
            out.bumps = 1
    except _OpFailed as failed:
        out.changes, out.replace = {}, False
        for seq, _ in decoded:
            record = failure_record(seq, flow, failed.op, failed.error, failed.tb)
            out.failures.append((seq, record))
        out.stats[f"failed:{flow}"] += len(decoded)
        log.warning("%s: flow %r op %s failed: %s", name, flow, failed.op, failed.error)
        return out
    except MotionError as exc:  # state too large, unpicklable result
        out.changes, out.fields, out.replace = {}, [], False
        for seq, _ in decoded:
            out.failures.append((seq, failure_record(seq, flow, "commit", exc)))
        out.stats[f"failed:{flow}"] += len(decoded)
        return out
    out.state = working
    return out


class _OpFailed(Exception):
    def __init__(self, op: str, error: BaseException, tb: str) -> None:
        super().__init__(op)
        self.op, self.error, self.tb = op, error, tb


def _run_ops(
    component: Component,
    instance_id: str,
    working: State,
    decoded: list[tuple[int, Update]],
    pending: dict[str, int],
    out: _Outcome,
) -> None:
    """Run the flow's ops over ``decoded``, collecting changes into ``working`` and ``out``."""
    flow = decoded[0][1].flow
    if flow == WRITE_FLOW:
        changes = decoded[0][1].props
        working.update(changes)
        out.changes.update(changes)
        out.stats[f"applied:{flow}"] += 1
        return
    if flow == MIGRATE_FLOW:
        migrated = _call(_migrate_op(decoded[0][1]), working, None)
        if not isinstance(migrated, dict):
            raise _OpFailed("migrate", UpdateResultError("migrate_func must return a dict"), "")
        working.clear()
        working.update(migrated)
        out.changes, out.replace = dict(migrated), True
        out.stats[f"applied:{flow}"] += 1
        return
    ops = component.update_ops(flow)
    if not ops:
        error = UnknownFlowError(f"{component.name} has no update op for flow {flow!r} here")
        raise _OpFailed("-", error, "")
    now = time.time()
    ran_for: set[int] = set()
    for op in ops:
        eligible = [
            (seq, update)
            for i, (seq, update) in enumerate(decoded)
            if not _discarded(op, pending.get(flow, 0) - i, now - update.enqueued_at)
        ]
        if op.batch and eligible:
            props = [_props(instance_id, seq, u) for seq, u in eligible]
            _merge(op, _call(op, working, props), working, out)
            out.stats[f"calls:{flow}"] += 1
        else:
            for seq, update in eligible:
                _merge(op, _call(op, working, _props(instance_id, seq, update)), working, out)
                out.stats[f"calls:{flow}"] += 1
        ran_for.update(seq for seq, _ in eligible)
    for seq, _ in decoded:
        out.stats[f"applied:{flow}" if seq in ran_for else f"discarded:{flow}"] += 1


def _discarded(op: Op, newer_or_same: int, age: float) -> bool:
    if op.discard_policy is DiscardPolicy.NUM_NEW_UPDATES:
        return newer_or_same > (op.discard_after or 0)
    if op.discard_policy is DiscardPolicy.SECONDS:
        return age > (op.discard_after or 0)
    return False


def _props(instance_id: str, seq: int, update: Update) -> Properties:
    props = Properties(update.props)
    props.serve_result = update.serve_result
    props.seq = seq
    props.idempotency_key = (instance_id, seq)
    return props


def _merge(op: Op, result: Any, working: State, out: _Outcome) -> None:
    if result is None:
        return
    if not isinstance(result, dict):
        error = UpdateResultError(
            f"update op {op.name} returned {type(result).__name__}; return a dict of the "
            f"state keys to change, or None"
        )
        raise _OpFailed(op.name, error, "")
    working.update(result)
    out.changes.update(result)


def _migrate_op(update: Update) -> Op:
    func = update.props["migrate_func"]
    return Op(MIGRATE_FLOW, "update", func, props_arg=None)


_loops = threading.local()


def _call(op: Op, working: State, props: Any) -> Any:
    """Call an op (sync or async) with retries; raise :class:`_OpFailed` after the last."""
    retries = op.retries if op.retries is not None else get_settings().update_retries
    for attempt in range(retries + 1):
        try:
            result = op.call(working.copy(), props)
            if inspect.iscoroutine(result):
                loop = getattr(_loops, "loop", None)
                if loop is None:
                    loop = _loops.loop = asyncio.new_event_loop()
                result = loop.run_until_complete(result)
            return result
        except Exception as exc:
            if attempt == retries:
                raise _OpFailed(op.name, exc, traceback.format_exc()) from exc
            time.sleep(min(0.1 * 2**attempt, 2.0))  # back off before the next try
    raise AssertionError("unreachable")


def _commit(
    client: redis.Redis,
    held: leases.Lease,
    component: str,
    out: _Outcome,
    report: DrainReport,
    then_next: bool = False,
) -> Any:
    """Commit ``out``; ``None`` when refused as a duplicate (read the window again).

    Raises :class:`_Stop` when the lease was lost. With ``then_next``, the commit
    script also releases the lease or returns the next window (see ``commit.lua``).
    """
    keys = held.keys
    fields = out.fields
    args: list[Any] = [
        held.token,
        out.first,
        out.last,
        held.period_ms,
        store.now_ms(),
        1 if out.replace else 0,
        out.bumps,
        1 if then_next else 0,
        WINDOW,
        keys.name,
    ]
    args += [len(fields) // 2, *fields]
    args += [len(out.stats), *[x for kv in out.stats.items() for x in kv]]
    args += [len(out.meta), *[x for kv in out.meta.items() for x in kv]]
    args += [len(out.failures), *[x for kv in out.failures for x in kv]]
    all_keys = [
        keys.meta,
        keys.state,
        keys.inbox,
        keys.lease,
        keys.failed,
        K.stats(component),
        K.PENDING,
        K.SWEEP,
    ]
    reply = scripts.run(client, "commit", all_keys, args)
    if reply == -1:
        raise _Stop("lease lost")
    if reply == -2:  # already applied by someone: re-read the window
        return None
    report.covered(out.first, out.last)
    report.applied += sum(v for k, v in out.stats.items() if k.startswith("applied:"))
    report.failed += len(out.failures)
    report.discarded += sum(v for k, v in out.stats.items() if k.startswith("discarded:"))
    if not out.failures:  # the state after the commit is ours: the next drain need not read it
        version = reply[0] if isinstance(reply, list) else reply
        store.STATE_CACHE.put(keys.name, str(version).encode(), out.state)
    return reply
