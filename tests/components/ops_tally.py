"""A component for the operations tests: counts hits, fails on demand, can be slow.

``Tally.hit`` adds ``props['n']`` (default 1) and records the seq, ``Tally.boom``
always fails (a failed update for the counters), ``Tally.nap`` sleeps
``props['sleep']`` seconds first (so a test can watch a backlog while it waits).
"""

from __future__ import annotations

import time

from motion import Component

Tally = Component("Tally")


@Tally.init_state
def setup() -> dict:
    return {"count": 0, "seqs": []}


@Tally.update("hit")
def hit(state, props):
    return {"count": state["count"] + props.get("n", 1), "seqs": [*state["seqs"], props.seq]}


@Tally.update("boom")
def boom(state, props):
    raise RuntimeError("boom on purpose")


@Tally.update("nap")
def nap(state, props):
    time.sleep(props.get("sleep", 0))
    return {"count": state["count"] + 1, "seqs": [*state["seqs"], props.seq]}
