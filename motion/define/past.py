"""What a component's instances keep of their past: ``Component(history=K,
retain_updates=N)``, checked here.

``history``: the last K versions of each instance, with what made each and the values
it changed (``handle.history()``, ``handle.read_state(key, version=v)``; stored by
the commit, see :mod:`motion.floor.history`). ``retain_updates``: at least the last N
applied updates' payloads and the state before them, for ``motion replay``. Definition
layer; uses the floor (errors).
"""

from __future__ import annotations

from motion.floor.errors import DefinitionError

#: versions of each instance kept by default
DEFAULT_HISTORY = 20
#: the most versions ``history=`` may keep
MAX_HISTORY = 10_000
#: the most updates ``retain_updates=`` may retain
MAX_RETAINED = 100_000


def kept_past(history: object, retain_updates: object) -> tuple[int, int]:
    """``(history, retain_updates)`` checked: whole numbers from 0 (off) to their maxima.

    Raises:
        DefinitionError: (a ``ValueError``) either is not such a number.
    """
    out = []
    for what, count, most in (
        ("history", history, MAX_HISTORY),
        ("retain_updates", retain_updates, MAX_RETAINED),
    ):
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= most:
            raise DefinitionError(
                f"{what} must be a whole number from 0 (off) to {most}, got {count!r}."
            )
        out.append(count)
    return out[0], out[1]
