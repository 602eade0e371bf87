"""A component for the flow-control tests (debounce, pause, on_failure, keep-newest).

``note`` appends ``props['x']`` to ``notes``; ``tick`` counts; ``keep`` keeps the newest
two pending updates (``kept``); ``slow`` waits until the Redis key ``flowctl:go:<x>``
exists (it sets ``flowctl:started:<x>`` first), so a test can enqueue a burst while a
drain is busy; ``deb`` is debounced (0.4 s, max_wait 3 s) and batched: each call appends
its list of x and its ``.discarded`` to ``batches``; ``longdeb`` is debounced 2 s (long
enough to kill a worker mid-debounce); ``fragile`` pauses its flow on failure and fails
on ``x == "bad"`` unless the state says ``allow_bad``, and ``fragbatch``, batched, fails
whole unless it does; each new dead letter is pushed
onto the Redis list ``flowctl:dead`` by ``on_update_failed``.
"""

from __future__ import annotations

import time

from motion import Component, DiscardPolicy
from motion.floor.connection import get_redis


def _dead(record) -> None:  # type: ignore[no-untyped-def]
    get_redis().rpush("flowctl:dead", f"{record.seq}:{record.flow}")


Flowy = Component("Flowy", on_update_failed=_dead)


@Flowy.init_state
def setup() -> dict:
    return {"notes": [], "ticks": 0, "kept": [], "batches": [], "frag": [], "allow_bad": False}


@Flowy.update("note")
def note(state, props):
    return {"notes": [*state["notes"], props["x"]]}


@Flowy.update("tick")
def tick(state, props):
    return {"ticks": state["ticks"] + 1}


@Flowy.update("keep", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=2)
def keep_newest(state, props):
    return {"kept": [*state["kept"], props["x"]]}


@Flowy.update("slow")
def slow(state, props):
    client = get_redis()
    client.set(f"flowctl:started:{props['x']}", 1)
    deadline = time.monotonic() + 30
    while not client.exists(f"flowctl:go:{props['x']}"):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.01)
    return {"ticks": state["ticks"] + 1}


@Flowy.update("deb", batch=True, debounce=0.4, max_wait=3)
def debounced(state, props):
    return {"batches": [*state["batches"], [[p["x"] for p in props], props.discarded]]}


@Flowy.update("longdeb", batch=True, debounce=2)
def long_debounced(state, props):
    return {"batches": [*state["batches"], [[p["x"] for p in props], props.discarded]]}


@Flowy.update("fragile", on_failure="pause")
def fragile(state, props):
    if props["x"] == "bad" and not state["allow_bad"]:
        raise ValueError("bad on purpose")
    return {"frag": [*state["frag"], props["x"]]}


@Flowy.update("fragbatch", batch=True, on_failure="pause")
def fragile_batch(state, props):
    if not state["allow_bad"]:
        raise ValueError("not allowed yet")
    return {"frag": [*state["frag"], *[p["x"] for p in props]]}
