"""What a drain commits: an :class:`Outcome` and the :class:`Version` records in it.

:func:`motion.worker.updates.apply` makes an outcome per group of updates; the drain
(:mod:`motion.worker.engine`) merges consecutive ones into one commit, whose arguments
include :func:`commit_args` (the history records, see :mod:`motion.floor.history`).

Floor; uses the floor (props).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from motion.floor.props import State


@dataclass
class Version:
    """One state change a drain commits: what the history records of it."""

    first: int
    last: int
    flow: str
    changed: list[str]  # the state keys it changed
    fields: list[Any]  # its encoded changes (field, value, ...)


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
        header = {"seqs": [version.first, version.last], "flows": [version.flow]}
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


@dataclass
class Outcome:
    """The changes, counters and failures of updates ``first``..``last``, committed as one."""

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
        self.versions += later.versions
        return self
