"""What one drain did (:class:`DrainReport`): the ``motion.apply`` task's result.

Worker road; no imports beyond the standard library.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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

    def covered(self, first: int, last: int) -> None:
        """Note that updates ``first``..``last`` were committed (applied, failed or discarded)."""
        self.first = first if not self.first else min(self.first, first)
        self.last = max(self.last, last)
        self.seqs = f"{self.first}-{self.last}" if self.first != self.last else str(self.last)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        hidden = ("first", "last", "failures")
        return {k: v for k, v in self.__dict__.items() if v not in (None, {}) and k not in hidden}
