"""The drain: apply an instance's pending updates in order, exactly once as state changes.

Called by the ``motion.apply`` task. One script call (``begin``) takes the
instance's lease (or returns at once if another worker holds it: the holder
drains everything) and returns the first window of the inbox and, if this
worker's copy is stale, the state. The update ops run over each window
(:mod:`motion.worker.updates`), and each update, or each group of quick ones, is
committed by the ``commit`` script, which checks the lease token and the
sequence and, on the window's last commit, releases the lease if the inbox is
empty or returns the next window.

A window holds at most :data:`WINDOW` updates and ``MOTION_BATCH_BYTES`` of
payloads (at least one), so a drain's memory is bounded by bytes. Ages are measured
by Redis' clock (``now`` in the window's meta). A drain that meets an update needing
code this worker lacks commits what came before it and leaves the instance *held*
(``waiting for code``), its updates pending in order, for a worker with the code; a
stored state it cannot read holds the instance too (``state unreadable``): that is
not any update's fault, so no update is failed for it. See :func:`drain`.

Worker road; uses the worker road (holds, lease, parking, updates), the definition layer
(component), the floor (awaits, connection, directory, errors, inbox, keys, outcome,
parked, props, scripts, settings, store).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from functools import partial
from typing import Any

import redis

from motion.define.component import Component, lookup
from motion.floor import directory, scripts, store
from motion.floor import keys as K
from motion.floor import parked as P
from motion.floor.awaits import Waits, run_or_hand_off, run_sync
from motion.floor.connection import get_redis
from motion.floor.errors import DrainFailedError, MotionError
from motion.floor.inbox import Window, failure_summary
from motion.floor.outcome import DrainReport, Outcome, commit_args, commit_keys
from motion.floor.props import State
from motion.floor.settings import get_settings
from motion.worker import holds, parking, updates
from motion.worker import lease as leases

log = logging.getLogger("motion.engine")

#: most inbox entries read per round trip
WINDOW = 64
#: quick updates in a window are committed together for at most this long (seconds)
COMMIT_BUDGET = 0.02
#: set while this process's worker stops: a drain finishes and commits the update it is
#: applying, then leaves the rest pending (released at once) for the next worker
STOPPING = threading.Event()
_STOPPING = "worker stopping"


def drain(component: Component, instance_id: str) -> DrainReport:
    """Drain the inbox of ``component``'s instance ``instance_id`` if no one else is
    (``async def`` ops are run on this thread's own event loop)."""
    report = DrainReport(K.instance_name(component.name, instance_id))
    return run_sync(drain_steps(component, instance_id, report))


def drain_steps(
    component: Component, instance_id: str, report: DrainReport, begun: Any = None
) -> Waits[DrainReport]:
    """:func:`drain`, yielding the waits of its ops (run by :mod:`motion.floor.awaits`).

    ``begun``: the reply of a ``begin`` already run for this instance (by the ``ready``
    take that took it, :mod:`motion.worker.ready`); ``None``: run it here."""
    client = get_redis()
    keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))
    period = leases.lease_ms()
    stats = K.stats(component.name, keys.name)
    reply = begun if begun is not None else leases.begin(client, keys, stats, WINDOW, _budget())
    token = reply[0]
    if isinstance(token, int):  # no lease taken
        report.skipped = {0: "busy", -1: "missing", -2: "idle"}[token]
        if token == -1:  # cleared: its timers went with it (a firer may still name it)
            client.zrem(K.timers_index(keys.name), keys.name)
        return report
    directory.note_once(client, stats)  # its counters' part: a cluster lists it once
    meta = dict(zip(reply[1][::2], reply[1][1::2], strict=True))
    held = leases.Lease(keys, token, int(float(meta.get(b"lease_ms", period))))
    leases.RENEWER.hold(held)
    try:
        state = _parse_state(client, component, instance_id, keys, reply[2])
        window = Window(reply[1], reply[3:])
        yield from _drain_held(component, instance_id, client, held, state, window, report)
    except _Stop as stop:
        report.skipped = stop.reason
        if stop.reason == _STOPPING:
            with contextlib.suppress(redis.RedisError):
                leases.release(client, held, abandon=True)
    except holds.Hold as hold:
        report.skipped = hold.reason["held"]
        holds.hold(client, held, hold, component.on_state_error)
    except BaseException as exc:
        # Redis away, or the process exits: the updates stay pending, and the lease
        # goes now, not in a lease period, for another worker to try
        log.warning("draining %s failed (%r); its updates stay pending", keys.name, exc)
        with contextlib.suppress(redis.RedisError):
            leases.release(client, held, abandon=True)
        raise
    finally:
        leases.RENEWER.drop(held)
    return report


def _budget() -> int:
    return get_settings().batch_bytes


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
    window: Window | None,
    report: DrainReport,
) -> Waits[None]:
    """Apply windows until the last commit released the lease (the inbox was empty)."""
    keys = held.keys
    due = False
    while True:
        if held.lost.is_set():
            raise _Stop("lease lost")
        if STOPPING.is_set():
            raise _Stop(_STOPPING)
        if window is None:  # after a refused commit: read the window again
            args = [WINDOW, "", _budget()]
            reply = scripts.run(client, "window", [keys.meta, keys.inbox], args, fast=True)
            window = Window(reply[0], reply[1:])
        if due or P.has_parked(window.meta_flat):  # release a flow whose hold ended
            commit = partial(_commit, client, held, component.name, report=report)
            moved, after = yield from parking.release_due(
                component, instance_id, client, held, state, window.meta_flat, commit
            )
            if moved:  # read the window again (and the state, if an op failed)
                state = (
                    after
                    if after is not None
                    else _fresh_state(client, component, instance_id, keys)
                )
                window, due = None, False
                continue
        if not window.entries and not due and not STOPPING.is_set() and leases.hot(keys.name):
            # a hot instance: keep the lease a little for its next update (no broker hop)
            try:
                window, due = leases.linger(client, held, WINDOW, _budget(), window)
            except LookupError:
                raise _Stop("lease lost") from None
            if window is not None:
                continue
            window = Window([], [])
        if not window.entries:
            released = leases.release(client, held)
            if released < 0:
                raise _Stop("lease lost")
            if released == 1:
                return
            due = released == 2  # a timer is due: go through it before letting go
            window = None  # updates arrived after the window was read
            continue
        leases.observe(keys.name, window.entries)
        _gather_batch(component, client, keys, window)
        result = yield from _apply_window(
            component, instance_id, client, held, state, window, report
        )
        if result is None:  # released: the inbox was empty after the last commit
            return
        state, window = result


def _gather_batch(
    component: Component, client: redis.Redis, keys: K.InstanceKeys, window: Window
) -> None:
    """Read on while a window ends in a run of a batch op, so one call gets the whole
    run (up to :data:`motion.worker.updates.BATCH_LIMIT` updates and ``MOTION_BATCH_BYTES``),
    not one window's share of it."""
    budget = _budget()
    size = sum(len(entry or b"") for entry in window.entries)
    while len(window.entries) < updates.BATCH_LIMIT and size < budget:
        start = window.first_seq() + len(window.entries)
        if start > window.last_seq() or updates.batch_flow(component, window.entries[-1]) is None:
            return
        args = [WINDOW, start, budget - size]
        more = scripts.run(client, "window", [keys.meta, keys.inbox], args, fast=True)[1:]
        if not more:
            return
        window.entries.extend(more)
        size += sum(len(entry or b"") for entry in more)


def _apply_window(
    component: Component,
    instance_id: str,
    client: redis.Redis,
    held: leases.Lease,
    state: State,
    window: Window,
    report: DrainReport,
) -> Waits[tuple[State, Window | None] | None]:
    """Apply one window, committing consecutive updates together for up to ``COMMIT_BUDGET``
    seconds (one round trip for many quick updates).

    The window's last commit also releases the lease when the inbox is empty
    (returns ``None``) or brings the next window; otherwise returns the state after
    this window and the next window (``None``: read it again).
    """
    keys = held.keys
    pending = window.pending()
    now = window.now()
    parker = None  # flow control (motion.worker.parking) only where it may hold something
    if component.flow_controlled() or P.in_force(window.meta_flat, window.entries):
        parker = parking.Parker(component, window.meta_flat, int((now or 0) * 1000))
    groups = updates.groups(component, window.first_seq(), window.entries, _budget())
    report.taking(window.first_seq(), window.first_seq() + len(window.entries) - 1)
    acc: Outcome | None = None
    started = time.monotonic()
    for index, group in enumerate(groups):
        if index and STOPPING.is_set():  # finish what was applied, leave the rest
            if acc is not None:
                _commit(client, held, component.name, acc, report)
            raise _Stop(_STOPPING)
        special = updates.is_migration(group)
        if acc is not None and special:
            if _commit(client, held, component.name, acc, report) is None:
                return _fresh_state(client, component, instance_id, keys), None
            acc, started = None, time.monotonic()
        try:
            if parker is None:
                outcome = yield from updates.apply_steps(
                    component, instance_id, state, group, pending, held.incarnation, now
                )
            else:
                outcome = yield from parking.apply(
                    parker, client, held, component, instance_id, state, group, pending, now, acc
                )
        except updates.LacksCode as lacking:
            # commit what came before it; it and everything after wait, in order
            if acc is not None and _commit(client, held, component.name, acc, report) is None:
                return _fresh_state(client, component, instance_id, keys), None
            raise holds.waiting(
                lacking.seq, lacking.flow, lacking.ops, lacking.what, lacking.needs
            ) from None
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
    # a hot instance keeps its lease (no release in this commit): the drain lingers
    lingers = leases.hot(keys.name) and not STOPPING.is_set()
    reply = _commit(client, held, component.name, acc, report, then_next=True, lingers=lingers)
    if reply is None:
        return _fresh_state(client, component, instance_id, keys), None
    if reply[1] == 1:
        return None
    if acc.failures:  # an op may have mutated shared values: start clean
        state = _fresh_state(client, component, instance_id, keys)
    # lingering: the commit marked the meta and its round trip waited on the nudge list
    return state, reply[2] if reply[1] == 2 else Window(reply[2], reply[3:])


def _parse_state(
    client: redis.Redis, component: Component, instance_id: str, keys: K.InstanceKeys, reply: Any
) -> State:
    """The state from a read reply (``begin``'s or ``read``'s), reading again if needed."""
    try:
        loaded = store.parse_read(component, instance_id, reply)
    except store.StaleCopy:  # our copy was evicted meanwhile
        loaded = None
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # load_state raised, or the value cannot be read
        raise holds.unreadable(exc) from exc
    if loaded is None:
        return _fresh_state(client, component, instance_id, keys)
    return loaded[1]


def _fresh_state(
    client: redis.Redis, component: Component, instance_id: str, keys: K.InstanceKeys
) -> State:
    """The committed state, read in full (the local copy is dropped first)."""
    store.STATE_CACHE.drop(keys.name)
    reply = scripts.run(client, "read", [keys.meta, keys.state], [""], fast=True)
    try:
        loaded = store.parse_read(component, instance_id, reply)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:  # load_state raised, or the value cannot be read
        raise holds.unreadable(exc) from exc
    if loaded is None:
        raise MotionError(f"{keys.name} has pending updates but no state; was it cleared?")
    return loaded[1]


def _commit(
    client: redis.Redis,
    held: leases.Lease,
    component: str,
    out: Outcome,
    report: DrainReport,
    then_next: bool = False,
    lingers: bool = False,
) -> Any:
    """Commit ``out``; ``None`` when refused as a duplicate (read the window again).

    Raises :class:`_Stop` when the lease was lost. With ``then_next``, the commit
    script also releases the lease or returns the next window (see ``commit.lua``).
    """
    keys = held.keys
    fields = out.fields
    args: list[Any] = [
        held.token,
        0 if out.release else out.first,
        -1 if out.release else out.last,
        held.period_ms,
        get_settings().linger_ms if lingers else store.now_ms(),
        1 if out.replace else 0,
        out.bumps,
        (3 if lingers else 1) if then_next else 0,
        WINDOW,
        keys.name,
        nonce := store.nonce(),
        _budget(),
    ]
    args += [len(fields) // 2, *fields]
    lists = out.stats.items(), out.meta.items(), out.failures, out.parked, out.sets.items()
    for pairs in (*lists, out.timers.items(), out.released):
        args += [len(pairs), *[x for kv in pairs for x in kv]]
    args += commit_args(out.history, out.retain, out.versions)  # lua/history.lua
    all_keys = commit_keys(keys, component, store.now_ms())
    if then_next and not lingers:  # this commit may free the lease: a refused renewal is no loss
        held.ending.set()
    timed = bool(out.timers or out.released or out.parked)  # new earliest timer? (commit.lua)
    commit = partial(leases.commit, client, held, all_keys, args, WINDOW, _budget())
    reply = directory.run_commit(client, keys.name, commit, timed)
    reply, tag = leases.settle(client, held, reply, nonce, then_next)  # (a lost reply)
    if then_next and not (isinstance(reply, list) and reply[1] == 1):
        held.ending.clear()  # the lease is still ours
    if reply == -1:
        raise _Stop("lease lost")
    if reply == -2:  # already applied by someone: re-read the window
        return None
    # committed: the strikes are gone (commit.lua), so the lease is back to its period
    held.period_ms = leases.lease_ms()
    report.count(out)
    if out.failures:  # on_update_failed, once per new dead letter, after its commit
        parking.notify_failures(lookup(component), keys.name, out.failures)
    if not out.failures:  # the state after the commit is ours: the next drain need not read it
        store.STATE_CACHE.put(keys.name, tag, out.state)
    return reply


def apply_task(
    component: Any, instance_id: Any, flow: Any = None, seq: Any = None
) -> dict[str, Any]:
    """The ``motion.apply`` task (registered by :mod:`motion.worker.tasks`): drain the
    instance's inbox. ``flow`` and ``seq`` only label the task in Flower. Raises
    :class:`DrainFailedError`, once all is committed, if the drain recorded failures."""
    if not isinstance(component, str) or not isinstance(instance_id, str) or not instance_id:
        raise TypeError(
            f"motion.apply takes (component: str, instance_id: str, flow, seq); got "
            f"({component!r}, {instance_id!r}, {flow!r}, {seq!r})"
        )
    comp = lookup(component)  # UnknownComponentError: visible in Flower; the inbox keeps it
    report = DrainReport(K.instance_name(comp.name, instance_id))
    # the drain runs here until an op awaits: then it goes on on the event loop
    if run_or_hand_off(drain_steps(comp, instance_id, report), report):
        return report.as_dict()  # its outcome is logged by the loop (motion.floor.awaits)
    if report.failed:  # raised after everything was committed: Flower shows a failure
        failed = report.failed, report.applied, report.seqs, report.failures
        raise DrainFailedError(failure_summary(report.instance, *failed))
    return report.as_dict()
