"""Flow control in the drain: which updates are held, parking them, releasing them.

The rules are :mod:`motion.floor.parked`'s. Over one window, a :class:`Parker` decides
for each update whether a flow-control option holds it: the whole instance or its
flow is paused (``hold:*`` / ``hold:<flow>``: a pause, or a failed update of an
``on_failure="pause"`` op), its flow already has updates parked (order is kept), it
was submitted with a due time still ahead, or its flow is debounced. A held update is
parked by the window's commit, and the flow's timer moves: a debounced flow fires at
``min(last enqueue + debounce, first enqueue + max_wait)`` (enqueue times are Redis'
clock, stamped by the enqueue script), a submitted update when it falls due.

:func:`release_due` runs before the drain goes on with the main sequence: each flow
whose hold has ended (no pause, its timer passed) has its parked updates applied in
seq order (a batch op gets them in one call) and committed as a *release* (the
watermark does not move). A keep-newest op (``NUM_NEW_UPDATES``) counts the flow's
pending updates afresh from Redis at its turn, so a burst that arrived while the drain
was busy counts whole.

Worker road; uses the worker road (holds, lease, outcome, updates), the definition layer
(component), the floor (awaits, errors, inbox, keys, outcome, parked, props, settings).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from motion.define.component import Component, DiscardPolicy
from motion.floor import parked as P
from motion.floor.awaits import Waits
from motion.floor.errors import FailedUpdate, PayloadError
from motion.floor.inbox import MIGRATE_FLOW, WRITE_FLOW, entry_header, parse_failures
from motion.floor.outcome import Outcome
from motion.floor.props import State
from motion.floor.settings import get_settings
from motion.worker import holds, updates
from motion.worker import lease as leases

log = logging.getLogger("motion.engine")

Group = list[tuple[int, bytes | None]]
#: ``commit(outcome) -> reply or None`` (the engine's commit, bound to its lease)
Commit = Callable[[Outcome], Any]
_SPECIAL = (WRITE_FLOW, MIGRATE_FLOW)
#: most parked members one release reads at a time
READ = 1000


@dataclass(frozen=True)
class Control:
    """A flow's flow-control options, from its update ops."""

    debounce_ms: int = 0
    max_wait_ms: int = 0
    pause_on_failure: bool = False
    keep_newest: bool = False


def control(component: Component, flow: str) -> Control:
    """The options of ``flow`` (its ops agree on debounce and max_wait: checked at definition)."""
    ops = component.update_ops(flow)
    if not ops:
        return Control()
    first = ops[0]
    return Control(
        int((first.debounce or 0) * 1000),
        int((first.max_wait or 0) * 1000),
        any(op.on_failure == "pause" for op in ops),
        any(op.discard_policy is DiscardPolicy.NUM_NEW_UPDATES for op in ops),
    )


def _meta(meta_flat: list[bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in zip(meta_flat[::2], meta_flat[1::2], strict=True)}


class Parker:
    """Which updates of one window are held; the outcomes that park them."""

    def __init__(self, component: Component, meta_flat: list[bytes], now_ms: int) -> None:
        meta = _meta(meta_flat)
        self.component = component
        self.now_ms = now_ms
        self.all_held = P.HOLD_ALL in meta
        self.holds = {
            k[5:]: v for k, v in meta.items() if k.startswith("hold:") and k != P.HOLD_ALL
        }
        self.parked = Counter({k[7:]: int(v) for k, v in meta.items() if k.startswith("parked:")})
        self.first = {k[7:]: int(v) for k, v in meta.items() if k.startswith("dfirst:")}

    def held(self, entry: bytes | None) -> bool:
        """Whether a flow-control option holds ``entry`` (a bad entry is not held: the
        drain records it)."""
        if entry is None:
            return False
        try:
            header = entry_header(entry)
        except PayloadError:
            return False
        flow = header.flow
        if flow in _SPECIAL:
            return False
        if self.all_held or flow in self.holds or self.parked[flow] > 0:
            return True
        if header.due_ms is not None and header.due_ms > self.now_ms:
            return True
        return control(self.component, flow).debounce_ms > 0

    def split(self, group: Group) -> tuple[Group, Group]:
        """``group`` as the updates to apply now and the held ones after them (once
        one update of a flow is held, every later one of it is)."""
        for i, (_, entry) in enumerate(group):
            if self.held(entry):
                return group[:i], group[i:]
        return group, []

    def park(self, group: Group, state: State) -> Outcome:
        """The outcome that parks ``group`` (held updates), moving the flows' timers."""
        out = Outcome(group[0][0], group[-1][0], state)
        for seq, entry in group:
            assert entry is not None
            header = entry_header(entry)
            flow = header.flow
            head = self.parked[flow] == 0
            self.parked[flow] += 1
            out.parked.append((seq, flow))
            due = header.due_ms if header.due_ms and header.due_ms > self.now_ms else 0
            ctl = control(self.component, flow)
            if ctl.debounce_ms and not self.all_held and flow not in self.holds:
                stamp = header.enqueued_ms or self.now_ms
                first = self.first.setdefault(flow, stamp)
                out.sets[f"dfirst:{flow}"] = str(first)
                fire = stamp + ctl.debounce_ms
                if ctl.max_wait_ms:
                    fire = min(fire, first + ctl.max_wait_ms)
                out.timers[flow] = str(max(fire, due))
            elif head and due:
                out.timers[flow] = str(due)
        return out

    def after(self, out: Outcome, flow: str) -> bool:
        """Park the failed updates of ``out`` if ``flow`` pauses on failure (the flow is
        then held at the first of them); whether it did."""
        if not out.failures or not control(self.component, flow).pause_on_failure:
            return False
        failed = sorted(seq for seq, _ in out.failures)
        for seq in failed:
            out.parked.append((seq, flow))
            out.meta[f"pending:{flow}"] += 1  # still pending: not applied
        reason = f"{P.FAILED_PREFIX}{failed[0]}"
        out.sets[P.hold_field(flow)] = reason
        out.sets["max_pending"] = str(get_settings().max_pending)
        self.holds[flow] = reason
        self.parked[flow] += len(failed)
        return True


def apply(
    parker: Parker,
    client: redis.Redis,
    held: leases.Lease,
    component: Component,
    instance_id: str,
    state: State,
    group: Group,
    pending: dict[str, int],
    now: float | None,
    acc: Outcome | None,
) -> Waits[Outcome]:
    """:func:`motion.worker.updates.apply_steps` with flow control: the held part of
    ``group`` is parked, a failure of an ``on_failure="pause"`` op parks the update."""
    run, rest = parker.split(group)
    out: Outcome | None = None
    if run:
        flow = _flow(run)
        if flow is not None and control(component, flow).keep_newest:
            pending[flow] = _fresh_pending(client, held, flow, acc)
        steps = updates.apply_steps(
            component, instance_id, state, run, pending, held.incarnation, now
        )
        out = yield from steps
        if flow is not None:
            parker.after(out, flow)
    if rest:
        parked = parker.park(rest, out.state if out is not None else state)
        out = parked if out is None else out.merge(parked)
    assert out is not None
    return out


def _flow(group: Group) -> str | None:
    entry = group[0][1]
    try:
        return entry_header(entry).flow if entry is not None else None
    except PayloadError:
        return None


def _fresh_pending(client: redis.Redis, held: leases.Lease, flow: str, acc: Outcome | None) -> int:
    """The flow's pending updates now (Redis' count, less what this drain applied and
    has not committed yet): a keep-newest op's turn counts every update enqueued so far."""
    raw: Any = client.hget(held.keys.meta, f"pending:{flow}")
    stored = int(raw or 0)
    return stored + (acc.meta.get(f"pending:{flow}", 0) if acc is not None else 0)


def release_due(
    component: Component,
    instance_id: str,
    client: redis.Redis,
    held: leases.Lease,
    state: State,
    meta_flat: list[bytes],
    commit: Commit,
) -> Waits[tuple[bool, State | None]]:
    """Apply the parked updates of a flow whose hold has ended (from ``state``): whether
    any commit was made (the drain then reads the window again), and the state after
    it (``None``: read it again, an op failed and may have mutated shared values).
    Yields the waits of their ops (:mod:`motion.floor.awaits`)."""
    meta = _meta(meta_flat)
    now_ms = int(meta.get("now", "0"))
    rows: Any = client.zrange(held.keys.timers, 0, -1, withscores=True)
    timers = {k.decode(): int(v) for k, v in rows}
    held_all = P.HOLD_ALL in meta
    flows = [
        k[7:]
        for k, v in meta.items()
        if k.startswith("parked:") and int(v) > 0 and not held_all and f"hold:{k[7:]}" not in meta
    ]
    # a due timer of a flow a hold keeps (or with nothing parked) goes: resume sets one
    stale = {f: "" for f, at in timers.items() if at <= now_ms and f not in flows}
    if stale and commit(Outcome(0, -1, state, release=True, timers=stale)) is not None:
        return True, state
    due = [f for f in flows if timers.get(f, 0) <= now_ms]
    for flow in due:
        moved, after = yield from _release_flow(
            component, instance_id, client, held, state, flow, now_ms, commit
        )
        if moved:
            return True, after  # one flow per call: the drain reads the window again
    return False, state


def _release_flow(
    component: Component,
    instance_id: str,
    client: redis.Redis,
    held: leases.Lease,
    state: State,
    flow: str,
    now_ms: int,
    commit: Commit,
) -> Waits[tuple[bool, State | None]]:
    """Apply ``flow``'s parked updates in seq order, up to one not due yet (see
    :func:`release_due` for what it returns)."""
    keys = held.keys
    members: Any = client.zrange(keys.parked, 0, -1)
    seqs = [s for s, f in map(P.parse_member, members) if f == flow]
    if not seqs:  # its count outlived its updates (never expected): mend it
        mend = Outcome(0, -1, state, release=True, sets={f"parked:{flow}": ""})
        mend.timers[flow] = ""
        return commit(mend) is not None, state
    found: Any = client.hmget(keys.inbox, seqs) if seqs else []
    entries: list[bytes | None] = list(found)
    take: Group = []
    stop_at: int | None = None
    for seq, entry in zip(seqs, entries, strict=True):
        header_due = _due(entry)
        if header_due and header_due > now_ms:
            stop_at = header_due
            break
        take.append((seq, entry))
    if not take:  # resumed, but its first update is not due yet: its timer says when
        if stop_at is None:
            return False, state
        timer = Outcome(0, -1, state, release=True, timers={flow: str(stop_at)})
        return commit(timer) is not None, state
    ctl = control(component, flow)
    batch = updates.batch_flow(component, take[0][1]) is not None if take else False
    groups = updates.groups(component, 0, [e for _, e in take]) if batch else [[t] for t in take]
    if batch:  # groups() numbered them 0..n-1: put the real seqs back
        flat = iter(take)
        groups = [[next(flat) for _ in g] for g in groups]
    pending: dict[str, int] = {}
    moved = False
    for index, group in enumerate(groups):
        if ctl.keep_newest:
            pending[flow] = _fresh_pending(client, held, flow, None)
        try:
            out = yield from updates.apply_steps(
                component, instance_id, state, group, pending, held.incarnation, now_ms / 1000
            )
        except updates.LacksCode as lacking:
            raise holds.waiting(
                lacking.seq, lacking.flow, lacking.ops, lacking.what, lacking.needs
            ) from None
        out.released, out.release = [(seq, flow) for seq, _ in group], True
        out.first, out.last = group[0][0], group[-1][0]
        parker = Parker(component, [], now_ms)
        paused = parker.after(out, flow)
        last = index == len(groups) - 1
        if paused or last:
            out.sets[f"dfirst:{flow}"] = ""
            out.timers[flow] = str(stop_at) if stop_at and not paused else ""
        if commit(out) is None:
            return True, None  # refused: someone went through them; read again
        if out.failures or paused:
            return True, None  # an op may have mutated shared values: read the state again
        state, moved = out.state, True
    return moved, state


def _due(entry: bytes | None) -> int | None:
    try:
        return entry_header(entry).due_ms if entry is not None else None
    except PayloadError:
        return None


def notify_failures(component: Component, name: str, failures: list[tuple[int, str]]) -> None:
    """Call the component's ``on_update_failed`` once per new dead letter (after its
    commit); an exception it raises is logged, never raised."""
    callback = getattr(component, "on_update_failed", None)
    if callback is None or not failures:
        return
    records: list[FailedUpdate] = parse_failures(name, [r.encode() for _, r in failures], "*ALL*")
    for record in records:
        try:
            callback(record)
        except Exception:
            log.exception("%s: on_update_failed raised for update #%d", name, record.seq)
