"""Components of the fault campaign: every applied update appends ``[seq, item]`` to
``state['log']``, so the state itself is the history of what was applied, in order.

``Journal`` stores its state plainly; ``HookedJournal`` (``Hooked`` here) has
``save_state``/``load_state`` hooks (identity, except that ``save_state`` raises
when an update set ``poison``:
the campaign's "raising hook" fault). On both, ``add`` raises for ``props['fail']``
(an update that must be recorded failed) and ``slow`` sleeps first (so a killed or
paused worker is caught mid-op more often). The flow-control kinds use ``burst``
(debounced 0.3 s, at most 1 s, batched), ``held`` (paused and resumed by the nemesis)
and ``later`` (updates enqueued with a due time).
"""

from __future__ import annotations

import time

from motion import Component

Journal = Component("Journal", cache_ttl=0)
Hooked = Component("HookedJournal", cache_ttl=0)


def _entry(state, props) -> dict:
    return {"log": [*state["log"], [props.seq, props["item"]]]}


for _component in (Journal, Hooked):

    @_component.init_state
    def setup() -> dict:
        return {"log": []}

    @_component.serve("add")
    def count(state, props):
        return len(state["log"])

    @_component.update("add")
    def record(state, props):
        if props.get("fail"):
            raise RuntimeError(f"refusing {props['item']} on purpose")
        return _entry(state, props)

    @_component.update("slow")
    def slow_record(state, props):
        time.sleep(props.get("sleep", 0.05))
        return _entry(state, props)

    @_component.update("burst", batch=True, debounce=0.3, max_wait=1.0)
    def burst(state, props_list):
        return {"log": [*state["log"], *[[p.seq, p["item"]] for p in props_list]]}

    @_component.update("held")
    def held(state, props):
        return _entry(state, props)

    @_component.update("later")
    def later(state, props):
        return _entry(state, props)


@Hooked.update("poison")
def poison(state, props):
    """Valid as an op; its ``poison`` key makes ``save_state`` raise."""
    return {**_entry(state, props), "poison": props["item"]}


@Hooked.save_state
def save(state):
    if state.get("poison"):
        raise RuntimeError(f"save_state refuses {state['poison']} on purpose")
    return dict(state)


@Hooked.load_state
def load(saved):
    return dict(saved)
