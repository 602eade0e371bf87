"""Running a flow's update ops over inbox entries: the outcome a drain commits.

A drain (:mod:`motion.worker.engine`) splits a window of inbox entries into groups
(:func:`groups`: one entry each, or a run of a batch op's flow), and :func:`apply_steps`
runs the flow's ops over a group on a working copy of the state: decoding each
payload (a bad one is a recorded failure), applying the discard policies, calling
batch ops once with every props, retrying a failing op, and merging the dicts the
ops return. The result is an :class:`Outcome`: the changed state keys, already
encoded, the counters, and the failure records, committed by one script call.

Every mistake in one update (an op or a hook raising, a result that cannot be
encoded or is too large, a payload that cannot be decoded or verified) is one
recorded failure of that update. An update that needs code this worker lacks (a
flow or op it does not define, a class its payload names that it cannot import)
is not a failure: :func:`apply_steps` raises :class:`LacksCode` before running anything,
and the drain leaves it, and everything after it, to a worker that has the code.

Worker road; uses the definition layer (component, definitions), the floor.
"""

from __future__ import annotations

import inspect
import logging
import time
import traceback
from typing import Any

from motion.define.component import Component, DiscardPolicy, Op
from motion.define.definitions import resolve
from motion.floor import awaits, inbox, store
from motion.floor import keys as K
from motion.floor.awaits import EXIT, Pause, Waits
from motion.floor.errors import (
    MigrateResultError,
    MotionError,
    PayloadError,
    UnknownComponentError,
    UpdateResultError,
)
from motion.floor.inbox import (
    MIGRATE_FLOW,
    WRITE_FLOW,
    Update,
    decode,
    entry_definition,
    entry_flow,
    failure_record,
)
from motion.floor.outcome import Batch, Outcome, Version
from motion.floor.props import Properties, State
from motion.floor.serde import needs_code
from motion.floor.settings import get_settings

log = logging.getLogger("motion.engine")

#: most pending updates one call of a batch op receives (a longer run is split; so is
#: a run over MOTION_BATCH_BYTES)
BATCH_LIMIT = 10_000
_SPECIAL = (WRITE_FLOW, MIGRATE_FLOW)


def batch_flow(component: Component, entry: bytes | None) -> str | None:
    """The flow of ``entry`` if a batch op applies it, else ``None``."""
    try:
        flow = entry_flow(entry) if entry is not None else None
        owner = resolve(component, entry_definition(entry))
    except (PayloadError, UnknownComponentError):  # apply() records or waits for it
        return None
    if flow is None or flow in _SPECIAL or not any(op.batch for op in owner.update_ops(flow)):
        return None
    return flow


def is_migration(group: list[tuple[int, bytes | None]]) -> bool:
    """Whether ``group`` is a migration (committed on its own: it replaces the state)."""
    entry = group[0][1]
    if entry is None:
        return False
    try:
        return entry_flow(entry) == MIGRATE_FLOW
    except PayloadError:
        return False


def groups(
    component: Component, first_seq: int, entries: list[bytes | None], budget: int = 0
) -> list[list[tuple[int, bytes | None]]]:
    """Split a window into commit units: one entry each, or runs of a batch flow made
    by one definition (each definition's op gets its own handles' updates), of at
    most :data:`BATCH_LIMIT` updates and ``budget`` bytes (``MOTION_BATCH_BYTES``; a
    run's first update always joins it)."""
    budget = budget or get_settings().batch_bytes
    groups: list[list[tuple[int, bytes | None]]] = []
    prev: tuple[str, str | None] | None = None
    size = 0
    for i, entry in enumerate(entries):
        seq = first_seq + i
        flow = batch_flow(component, entry)
        key = None if flow is None else (flow, entry_definition(entry))
        length = len(entry or b"")
        if (
            key is not None
            and groups
            and prev == key
            and len(groups[-1]) < BATCH_LIMIT
            and size + length <= budget
        ):
            groups[-1].append((seq, entry))
            size += length
        else:
            groups.append([(seq, entry)])
            size = length
        prev = key
    return groups


def _owner(component: Component, first: tuple[int, bytes | None]) -> Component:
    """The definition that applies the group starting with ``first`` (see
    :func:`motion.define.definitions.resolve`); raises :class:`LacksCode` if this process does
    not have it."""
    seq, entry = first
    try:
        return resolve(component, entry_definition(entry))
    except UnknownComponentError as exc:
        raise LacksCode(seq, entry_flow(entry) if entry else "?", str(exc)) from exc


class LacksCode(Exception):
    """This worker cannot apply update ``seq``: it lacks the code (``what`` says which)."""

    def __init__(
        self, seq: int, flow: str, what: str, ops: tuple[str, ...] = (), needs: str = ""
    ) -> None:
        super().__init__(what)
        self.seq, self.flow, self.what, self.ops = seq, flow, what, ops
        self.needs = needs  # "module" or "module:name" its payload names, if that is it


def _lacks(
    component: Component, seq: int, update: Update, by_name: bool = True
) -> LacksCode | None:
    """Why this worker cannot apply ``update``, or ``None`` if it can."""
    if update.flow in _SPECIAL:
        return None
    have = [op.name for op in component.update_ops(update.flow)]
    if not have:
        what = f"{component.name} has no update op for flow {update.flow!r} in this worker"
        return LacksCode(seq, update.flow, what, update.ops)
    missing = [name for name in update.ops if name not in have] if by_name else []
    if missing:
        what = (
            f"flow {update.flow!r} of {component.name} has no update op {missing} in this "
            f"worker (it has {have})"
        )
        return LacksCode(seq, update.flow, what, update.ops)
    return None


def apply_steps(
    component: Component,
    instance_id: str,
    state: State,
    group: list[tuple[int, bytes | None]],
    pending: dict[str, int],
    incarnation: bytes = b"",
    now: float | None = None,
    definition: Component | None = None,
) -> Waits[Outcome]:
    """Run the ops of one group (``(seq, inbox entry)`` pairs) on a copy of ``state``.

    ``pending`` counts the updates not yet applied per flow (for NUM_NEW_UPDATES);
    ``incarnation`` is the life of the instance the changes are encoded (signed) for;
    ``now`` is Redis' clock (seconds), which SECONDS policies measure ages by.
    A failing op or hook, or a bad payload, leaves the state unchanged and is
    recorded in the outcome's failures; the group is committed either way, so later
    updates apply. The ops are those of the definition that enqueued the group
    (:func:`motion.define.definitions.resolve`), or ``definition``'s when given (a
    replay through a candidate: its ops run whatever their names); the state is read
    and written as ``component`` does. Yields the waits of its ops (:mod:`motion.floor.awaits`).

    Raises:
        LacksCode: an update of the group needs code this worker lacks (its
            definition, a flow, an op, a class its payload names); nothing ran.
    """
    owner = _owner(component, group[0]) if definition is None else definition
    out = Outcome(group[0][0], group[-1][0], state)
    out.history, out.retain = component.history, component.retain_updates
    name = K.instance_name(component.name, instance_id)
    decoded: list[tuple[int, Update]] = []
    flow = "?"
    live = [(seq, entry) for seq, entry in group if not inbox.is_cancelled(entry)]
    out.meta["cancels"] -= len(group) - len(live)  # cancelled: the commit checks and counts
    for seq, entry in live:
        try:
            if entry is None:
                raise PayloadError(f"update #{seq} is missing from the inbox")
            flow = entry_flow(entry)
            update = decode(owner, entry, name)
            lacking = _lacks(owner, seq, update, by_name=definition is None)
            if lacking is not None:
                raise lacking
            decoded.append((seq, update))
        except MotionError as exc:
            needs = needs_code(exc)
            if needs is not None:
                what = f"its payload needs code this worker lacks: {exc}"
                raise LacksCode(seq, flow, what, needs=needs) from exc
            out.failures.append((seq, failure_record(seq, flow, "-", exc)))
            out.stats[f"failed:{flow}"] += 1
        if flow != "?":
            out.meta[f"pending:{flow}"] -= 1
    if not decoded:
        return out
    working = state.copy()
    clock = time.time() if now is None else now
    try:
        yield from _run_ops(owner, instance_id, working, decoded, pending, out, clock)
        if out.changes or out.replace:
            whole = component.save_state_func is not None
            changed = working if whole else out.changes
            try:
                out.fields = store.encode_changes(component, name, changed, incarnation)
            except (MotionError, *EXIT):
                raise
            except BaseException as exc:  # the save_state hook raised
                raise OpFailed("save_state", exc, traceback.format_exc()) from exc
            out.bumps = 1
            seqs = [seq for seq, _ in decoded]
            out.versions = [Version(seqs, flow, sorted(out.changes), out.fields)]
    except OpFailed as failed:
        out.changes, out.replace = {}, False
        for seq, _ in decoded:
            record = failure_record(seq, flow, failed.op, failed.error, failed.tb)
            out.failures.append((seq, record))
        out.stats[f"failed:{flow}"] += len(decoded)
        error = f"{type(failed.error).__name__}: {failed.error}"
        log.warning("%s: flow %r op %s failed: %s", name, flow, failed.op, error)
        return out
    except MotionError as exc:  # state too large, unpicklable result
        out.changes, out.fields, out.replace = {}, [], False
        for seq, _ in decoded:
            out.failures.append((seq, failure_record(seq, flow, "commit", exc)))
        out.stats[f"failed:{flow}"] += len(decoded)
        return out
    out.state = working
    return out


def _run_ops(
    component: Component,
    instance_id: str,
    working: State,
    decoded: list[tuple[int, Update]],
    pending: dict[str, int],
    out: Outcome,
    now: float,
) -> Waits[None]:
    """Run the flow's ops over ``decoded``, collecting changes into ``working`` and ``out``."""
    flow = decoded[0][1].flow
    if flow == WRITE_FLOW:
        changes = decoded[0][1].props
        working.update(changes)
        out.changes.update(changes)
        out.stats[f"applied:{flow}"] += 1
        return
    if flow == MIGRATE_FLOW:
        func = decoded[0][1].props["migrate_func"]
        migrated = yield from call(Op(MIGRATE_FLOW, "update", func, props_arg=None), working, None)
        if not isinstance(migrated, dict):
            raise OpFailed(
                "migrate",
                MigrateResultError(f"migrate_func returned {type(migrated).__name__}, not a dict"),
                "",
            )
        working.clear()
        working.update(migrated)
        out.changes, out.replace = dict(migrated), True
        out.stats[f"applied:{flow}"] += 1
        return
    ops = component.update_ops(flow)
    ran_for: set[int] = set()
    for op in ops:
        eligible = [
            (seq, update)
            for i, (seq, update) in enumerate(decoded)
            if not _discarded(op, pending.get(flow, 0) - i, now - update.enqueued_at)
        ]
        if len(eligible) < len(decoded):  # per op: `motion status` shows them
            out.stats[f"discarded by {op.name}:{flow}"] += len(decoded) - len(eligible)
        if op.batch and eligible:
            props = Batch(_props(instance_id, seq, u) for seq, u in eligible)
            props.discarded = len(decoded) - len(eligible)
            _merge(op, (yield from call(op, working, props)), working, out)
            out.stats[f"calls:{flow}"] += 1
        else:
            for seq, update in eligible:
                result = yield from call(op, working, _props(instance_id, seq, update))
                _merge(op, result, working, out)
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


def _merge(op: Op, result: Any, working: State, out: Outcome) -> None:
    if result is None:
        return
    if not isinstance(result, dict):
        error = UpdateResultError(
            f"update op {op.name} returned {type(result).__name__}; return a dict of the "
            f"state keys to change, or None"
        )
        raise OpFailed(op.name, error, "")
    working.update(result)
    out.changes.update(result)


class OpFailed(Exception):
    """Op ``op`` failed on its last attempt with ``error`` (its traceback ``tb``)."""

    def __init__(self, op: str, error: BaseException, tb: str) -> None:
        super().__init__(op)
        self.op, self.error, self.tb = op, error, tb


def call(op: Op, working: State, props: Any) -> Waits[Any]:
    """Call an op (sync or async) with retries; raise :class:`OpFailed` after the last.

    An ``async def`` op's coroutine is yielded to the driver, which awaits it.
    """
    retries = op.retries if op.retries is not None else get_settings().update_retries
    for attempt in range(retries + 1):
        try:
            result = op.call(working.copy(), props)
            if inspect.iscoroutine(result):
                result = yield result
            return result
        except EXIT:
            raise
        except BaseException as exc:
            if awaits.terminating():
                raise
            if attempt == retries:
                raise OpFailed(op.name, exc, traceback.format_exc()) from exc
        yield Pause(min(0.1 * 2**attempt, 2.0))  # back off before the next try
    raise AssertionError("unreachable")
