"""Components for the admin, CLI and HTTP tests (imported by worker subprocesses too).

``Notes`` keeps a list of notes; its ``gate`` update blocks until a file exists, so
a test can hold updates pending while it enqueues more behind them.
"""

from __future__ import annotations

import time
from pathlib import Path

from motion import Component

Notes = Component("Notes", cache_ttl=0)


@Notes.init_state
def setup(owner: str = "nobody") -> dict:
    return {"owner": owner, "notes": []}


@Notes.serve("add")
def count(state, props):
    return {"owner": state["owner"], "count": len(state["notes"])}


@Notes.update("add")
def remember(state, props):
    if props.get("fail"):
        raise RuntimeError(f"refusing note {props['text']!r}")
    return {"notes": [*state["notes"], props["text"]]}


@Notes.serve("peek")
def peek(state, props):
    return list(state["notes"])


@Notes.update("gate")
def gate(state, props):
    """Wait (20 s at most) until the file ``props['path']`` exists."""
    deadline = time.monotonic() + 20
    while not Path(props["path"]).exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return {"notes": [*state["notes"], "gate"]}
