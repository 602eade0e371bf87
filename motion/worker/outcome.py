"""What running update ops produces: the :class:`Outcome` a drain commits, and the
:class:`Batch` list a batch op receives.

An outcome covers consecutive seqs ``first..last`` of the main sequence (or, for a
release of parked updates, the listed ``released`` seqs): the changed state keys,
already encoded, the counters, the failure records, and the flow-control changes
(updates it parks, meta fields it sets, timers it moves; see
:mod:`motion.floor.parked`). One ``commit`` script call writes it all.

Worker road; uses the floor (props).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from motion.floor.props import State


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
        return self
