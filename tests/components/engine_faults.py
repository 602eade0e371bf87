"""Components for the engine fault tests (tests/test_engine_faults.py).

Every op that succeeds records ``props.seq`` in ``state['seqs']``. ``Effects``
appends a line to the file ``props['log']`` each time an op *starts*: the outside
effect (an LLM call) that must not be repeated.
"""

from __future__ import annotations

import os
import re
import time

from motion import Component, DiscardPolicy


class Interrupted(BaseException):
    """What an op may raise that is not an ``Exception`` (and not process exit)."""


def _alert(name: str, error: BaseException) -> None:
    path = os.environ.get("MOTION_TEST_ALERTS")
    if path:
        with open(path, "a") as out:
            out.write(f"{name} {type(error).__name__}\n")


Hooks = Component("Hooks", on_state_error=_alert)


@Hooks.init_state
def hooks_setup() -> dict:
    return {"seqs": []}


@Hooks.save_state
def save(state):
    if "boom" in state.get("last", ""):
        raise RuntimeError("save_state refused the value")
    return {"seqs": state["seqs"], "last": state.get("last", "")}


@Hooks.load_state
def load(saved):
    return saved


@Hooks.update("add")
def hooks_add(state, props):
    return {"seqs": [*state["seqs"], props.seq], "last": props.get("text", "")}


@Hooks.update("base")
def hooks_base_exception(state, props):
    if props.get("raise"):
        raise Interrupted("an op raised a BaseException")
    return {"seqs": [*state["seqs"], props.seq]}


@Hooks.update("exit")
def hooks_exit(state, props):
    raise KeyboardInterrupt


Effects = Component("Effects")


@Effects.init_state
def effects_setup() -> dict:
    return {"seqs": []}


@Effects.update("hog")
def hog(state, props):
    with open(props["log"], "a") as out:
        out.write(f"{props.seq}\n")
    # one C call that holds the GIL for seconds: the lease renewer cannot run
    re.match(r"(x+x+)+y", "x" * props["n"])
    return {"seqs": [*state["seqs"], props.seq]}


Tally = Component("Tally")


@Tally.init_state
def tally_setup() -> dict:
    return {"count": 0, "last": 0}


@Tally.update("add")
def tally_add(state, props):
    return {"count": state["count"] + 1, "last": props.seq}


@Tally.update("gate")
def tally_gate(state, props):
    # holds the lease (the backlog builds behind it) until the test opens the gate
    if props.get("started"):
        open(props["started"], "w").close()
    deadline = time.monotonic() + 60
    while not os.path.exists(props["gate"]):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return {"count": state["count"] + 1, "last": props.seq}


@Tally.update("recent", discard_policy=DiscardPolicy.SECONDS, discard_after=30)
def tally_recent(state, props):
    return {"count": state["count"] + 1, "last": props.seq}


Batches = Component("Batches")


@Batches.init_state
def batches_setup() -> dict:
    return {"calls": [], "seqs": []}


@Batches.update("bulk", batch=True)
def bulk(state, props_list):
    return {
        "calls": [*state["calls"], len(props_list)],
        "seqs": [*state["seqs"], *(p.seq for p in props_list)],
    }
