"""Extra Ledger flows for the fault battery (import after ``ledger``).

``stall`` sleeps ``props['sleep']`` seconds the first time it runs for an update
(it creates ``props['marker']`` first, holding the pid of the process running it);
a re-run of the same update after a takeover finds the marker and returns at
once. Like every Ledger op it records ``props.seq`` in ``state['seqs']``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ledger import Ledger


@Ledger.update("stall")
def stall(state, props):
    marker = Path(props["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(props["sleep"])
    return {"seqs": [*state["seqs"], props.seq], "items": [*state["items"], props["item"]]}


#: run by the ``gate`` serve op in the caller, between its serve and its enqueue
GATE_HOOKS: list = []


@Ledger.serve("gate")
def gate(state, props):
    while GATE_HOOKS:
        GATE_HOOKS.pop()()
    return len(state["seqs"])


@Ledger.update("gate")
def gate_record(state, props):
    return {"seqs": [*state["seqs"], props.seq], "items": [*state["items"], props["item"]]}
