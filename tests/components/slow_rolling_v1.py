"""``SlowRolling`` as the old code has it: flow ``base`` only.

The held-instance wait test runs a worker with this module while callers (and a
later worker) have :mod:`slow_rolling_v2`, which adds flow ``slow``.
"""

from __future__ import annotations

from motion import Component

SlowRolling = Component("SlowRolling")


@SlowRolling.init_state
def setup() -> dict:
    return {"seqs": []}


@SlowRolling.update("base")
def base(state, props):
    return {"seqs": [*state["seqs"], props.seq]}
