"""``Rolling`` as the old code has it: flow ``base``, and flow ``old`` with one op.

The rolling-deploy tests run a worker with this module while callers (and a later
worker) have :mod:`rolling_v2`, which adds flow ``new`` and a second op to ``old``.
"""

from __future__ import annotations

from motion import Component

Rolling = Component("Rolling")


@Rolling.init_state
def setup() -> dict:
    return {"seqs": [], "audited": []}


@Rolling.update("base")
def base(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@Rolling.update("old")
def add(state, props):
    return {"seqs": [*state["seqs"], props.seq]}
