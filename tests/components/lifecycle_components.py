"""Components for the incarnation and instance-lifecycle tests (worker subprocesses too).

``Tally`` adds ``props['by']`` to ``n`` and logs ``props['label']``; with
``props['gate']`` its update first waits (20 s at most) until that file exists, so
a test can hold a drain mid-update while it clears and re-creates the instance.
"""

from __future__ import annotations

import time
from pathlib import Path

from motion import Component

Tally = Component("Tally", cache_ttl=0)


@Tally.init_state
def setup() -> dict:
    return {"n": 0, "log": []}


@Tally.serve("get")
def get(state, props):
    return state["n"]


@Tally.update("add")
def add(state, props):
    gate = props.get("gate")
    if gate:
        deadline = time.monotonic() + 20
        while not Path(gate).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
    return {"n": state["n"] + props["by"], "log": [*state["log"], props["label"]]}
