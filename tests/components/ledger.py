"""Components the integration tests run on worker subprocesses.

``Ledger`` records, per instance, the ``props.seq`` of every applied update, so a
test can check "each update applied once, in order" from the state alone.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from motion import Component

Ledger = Component("Ledger")


@Ledger.init_state
def setup() -> dict:
    return {"seqs": [], "items": []}


@Ledger.serve("add")
def count(state, props):
    return len(state["seqs"])


@Ledger.update("add")
def record(state, props):
    return {"seqs": [*state["seqs"], props.seq], "items": [*state["items"], props["item"]]}


@Ledger.update("slow")
def slow_record(state, props):
    """Sleeps ``props['sleep']`` s, touching ``props['marker']`` first (so a test knows it runs)."""
    marker = props.get("marker")
    if marker:
        Path(marker).write_text(str(os.getpid()))
    # a rescuing worker in a crash test caps the sleep, so the re-run finishes fast
    time.sleep(min(props.get("sleep", 0), float(os.environ.get("LEDGER_SLOW_CAP", "inf"))))
    return {"seqs": [*state["seqs"], props.seq], "items": [*state["items"], props["item"]]}


@Ledger.update("flaky")
def flaky(state, props):
    if props.get("fail"):
        raise RuntimeError(f"refusing item {props['item']}")
    return {"seqs": [*state["seqs"], props.seq], "items": [*state["items"], props["item"]]}
