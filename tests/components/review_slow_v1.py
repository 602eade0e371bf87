"""``ReviewSlow`` as the old code has it: flow ``base`` only.

The held-instance review test runs a worker with this module while callers (and a
later worker) have :mod:`review_slow_v2`, which adds flow ``slow``.
"""

from __future__ import annotations

from motion import Component

ReviewSlow = Component("ReviewSlow")


@ReviewSlow.init_state
def setup() -> dict:
    return {"seqs": []}


@ReviewSlow.update("base")
def base(state, props):
    return {"seqs": [*state["seqs"], props.seq]}
