"""A component for the ticket, dead-letter and flow-control tests (workers import it).

``Tickets`` keeps the items its ``note`` updates appended, in order. ``note`` fails
while the file named by ``props['poison']`` exists (so a test can make an update a
dead letter, remove the file and retry it); ``gated`` blocks until the file named by
``props['gate']`` exists, touching ``props['started']`` first (so a test knows the op
runs, and decides when it ends); ``strict`` is ``note`` with ``on_failure="pause"``. The
``read`` serve op returns the items and ``props.fresh``.
"""

from __future__ import annotations

import time
from pathlib import Path

from motion import Component

Tickets = Component("Tickets", cache_ttl=0)

GATE_LIMIT = 60.0  # a gated op gives up (and fails) after this long


@Tickets.init_state
def setup() -> dict:
    return {"items": []}


@Tickets.serve("read")
def read(state, props):
    return {"items": list(state["items"]), "fresh": props.fresh}


@Tickets.update("note", retries=0)
def note(state, props):
    poison = props.get("poison")
    if poison and Path(poison).exists():
        raise ValueError(f"poisoned item {props['item']!r}")
    return {"items": [*state["items"], props["item"]]}


@Tickets.update("gated", retries=0)
def gated(state, props):
    Path(props["started"]).write_text("running")
    deadline = time.monotonic() + GATE_LIMIT
    while not Path(props["gate"]).exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return {"items": [*state["items"], props["item"]]}


@Tickets.update("strict", retries=0, on_failure="pause")
def strict(state, props):
    """As ``note``, but a failure stops the flow until the update is retried or dropped."""
    poison = props.get("poison")
    if poison and Path(poison).exists():
        raise ValueError(f"poisoned item {props['item']!r}")
    return {"items": [*state["items"], props["item"]]}
