"""A component for the bad-input tests: ops that return the wrong things.

Every op that succeeds records ``props.seq`` in ``state['seqs']``, so a test can
check which updates were applied and in what order.
"""

from __future__ import annotations

import threading

from motion import Component

BadInput = Component("BadInput")


@BadInput.init_state
def setup() -> dict:
    return {"seqs": [], "blob": b""}


@BadInput.update("ok")
def ok(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@BadInput.serve("lock")
def unpicklable_result(state, props):
    return threading.Lock()


@BadInput.update("lock")
def after_lock(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@BadInput.update("nondict")
def returns_a_list(state, props):
    return ["not", "a", "dict"]


@BadInput.update("big")
def grows(state, props):
    return {"blob": b"x" * props["size"], "seqs": [*state["seqs"], props.seq]}
