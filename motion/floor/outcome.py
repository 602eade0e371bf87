"""What a drain produces: the :class:`Outcome` each ``commit`` script call writes, the
:class:`Batch` list a batch op receives, and the :class:`DrainReport` of a whole drain
(the ``motion.apply`` task's result).

An outcome covers consecutive seqs ``first..last`` of the main sequence (or, for a
release of parked updates, the listed ``released`` seqs): the changed state keys,
already encoded, the counters, the failure records, and the flow-control changes
(updates it parks, meta fields it sets, timers it moves; see
:mod:`motion.floor.parked`), and a :class:`Version` per state change, which the commit
records in the instance's history (:func:`commit_args`, :mod:`motion.floor.history`).
One ``commit`` script call writes it all.

Floor (the data of the commit script's arguments and of the task's result, built by
the worker road); uses the floor (keys, props, wakeup).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from motion.floor import keys as K
from motion.floor.props import State
from motion.floor.wakeup import flow_label


@dataclass
class Version:
    """One state change a drain commits: what the history records of it."""

    seqs: list[int]  # the updates that made it
    flow: str
    changed: list[str]  # the state keys it changed
    fields: list[Any]  # its encoded changes (field, value, ...)


def runs(seqs: list[int]) -> list[list[int]]:
    """``[4, 5, 6, 9]`` -> ``[[4, 6], [9, 9]]``: the seqs as runs (a batch's stay small)."""
    out: list[list[int]] = []
    for seq in seqs:
        if out and out[-1][1] == seq - 1:
            out[-1][1] = seq
        else:
            out.append([seq, seq])
    return out


def commit_args(history: int, retain: int, versions: list[Version]) -> list[Any]:
    """The commit script's history arguments (see ``lua/history.lua``): the history cap,
    the retain cap, then one record per version: its header (JSON), the fields it
    changed, and its own new values of the fields a later version here changes again."""
    out: list[Any] = [history, retain, len(versions) if history else 0]
    if not history:
        return out
    for i, version in enumerate(versions):
        names = version.fields[::2]
        later = {f for v in versions[i + 1 :] for f in v.fields[::2]}
        header = {"seqs": runs(version.seqs), "flows": [version.flow]}
        header["changed"] = version.changed
        pairs = zip(names, version.fields[1::2], strict=True)
        carried = [x for kv in pairs if kv[0] in later for x in kv]
        out += [
            json.dumps(header, separators=(",", ":")),
            len(names),
            *names,
            len(carried) // 2,
            *carried,
        ]
    return out


class Batch(list[Any]):
    """The props list a batch op receives, in seq order; ``discarded`` says how many of
    the pending updates a discard policy dropped before the call."""

    discarded: int = 0


@dataclass
class Outcome:
    """The changes of one commit (see the module docstring)."""

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
    #: (seq, flow) of updates this commit parks (held by a flow-control option)
    parked: list[tuple[int, str]] = field(default_factory=list)
    #: meta fields to set ('' deletes): hold reasons, debounce starts
    sets: dict[str, str] = field(default_factory=dict)
    #: flow -> due ms ('' removes) in the instance's timers
    timers: dict[str, str] = field(default_factory=dict)
    #: (seq, flow) of parked updates this commit goes through (a release: the
    #: watermark does not move)
    released: list[tuple[int, str]] = field(default_factory=list)
    #: a release: goes through parked updates (``released``), not the main sequence
    release: bool = False
    versions: list[Version] = field(default_factory=list)  # one per bump, in order
    history: int = 0  # the component's history=: versions kept
    retain: int = 0  # the component's retain_updates=

    def merge(self, later: Outcome) -> Outcome:
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
        self.parked += later.parked
        self.sets.update(later.sets)
        self.timers.update(later.timers)
        self.released += later.released
        self.versions += later.versions
        # (an outcome not made by applying updates, e.g. one that parks, has no caps)
        self.history, self.retain = max(self.history, later.history), max(self.retain, later.retain)
        return self


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
    #: updates applied per flow (Flower's result says which flows the drain went through)
    flows: dict[str, int] = field(default_factory=dict)
    first: int = field(default=0, repr=False)
    last: int = field(default=0, repr=False)
    #: the first few failure records (JSON, as stored), for the task's error
    failures: list[str] = field(default_factory=list, repr=False)

    #: with ``continued``, the updates the task took before its drain moved on to the
    #: event loop (an op awaited); they show in ``seqs``
    continued: str | None = None
    taken: tuple[int, int] = field(default=(0, 0), repr=False)

    def taking(self, first: int, last: int) -> None:
        """Note that the drain is applying updates ``first``..``last`` (a window)."""
        self.taken = (first, last)

    def handed_off(self) -> None:
        """The drain goes on on the event loop: the task shows what it took so far."""
        first = self.first or self.taken[0]
        last = max(self.last, self.taken[1])
        self.seqs = f"{first}-{last}" if first != last else str(last)
        self.continued = "on the event loop"

    def count(self, out: Outcome) -> None:
        """Add what the committed ``out`` did."""
        if out.last >= out.first:
            self.covered(out.first, out.last)
        self.applied += sum(v for k, v in out.stats.items() if k.startswith("applied:"))
        self.failed += len(out.failures)
        self.failures += [record for _, record in out.failures[: 3 - len(self.failures)]]
        for key, count in out.stats.items():
            if key.startswith("applied:") and count:
                flow = flow_label(key[len("applied:") :])
                self.flows[flow] = self.flows.get(flow, 0) + count
        self.discarded += sum(v for k, v in out.stats.items() if k.startswith("discarded:"))

    def covered(self, first: int, last: int) -> None:
        """Note that updates ``first``..``last`` were committed (applied, failed or discarded)."""
        self.first = first if not self.first else min(self.first, first)
        self.last = max(self.last, last)
        self.seqs = f"{self.first}-{self.last}" if self.first != self.last else str(self.last)

    def summary(self) -> str:
        """One line: the seqs gone through (else why none were), then what was not
        plainly applied: ``"4-17"``, ``"4-6, 1 failed"``, ``"busy"``,
        ``"3 (on the event loop)"``. A many-instance task's result lists these (Celery
        formats a result for the log and for Flower's event: a line each stays cheap)."""
        line = self.seqs or self.skipped or "nothing to apply"
        if self.failed:
            line += f", {self.failed} failed"
        if self.discarded:
            line += f", {self.discarded} discarded"
        if self.seqs and self.skipped:
            line += f" ({self.skipped})"
        if self.continued:
            line += f" ({self.continued})"
        return line

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        hidden = ("first", "last", "failures", "taken")
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}) and k not in hidden}


def commit_keys(keys: K.InstanceKeys, component: str, now_ms: int) -> list[str]:
    """The KEYS of the ``commit`` script for instance ``keys`` (see ``lua/commit.lua``)."""
    return [
        keys.meta,
        keys.state,
        keys.inbox,
        keys.lease,
        keys.failed,
        K.stats(component, keys.name),
        K.part(K.PENDING, keys.name),
        K.part(K.SWEEP, keys.name),
        keys.cache,
        K.part(K.HELD, keys.name),
        keys.parked,
        keys.timers,
        K.timers_index(keys.name),
        *keys.past(),
        K.series(component, now_ms, keys.name),
        keys.dead,
        keys.nudge,
        keys.woke,
    ]
