"""``Counter`` as one test module defines it: flow ``add`` adds ``props['n']``.

A worker importing it together with :mod:`counter_doubles` (another ``Counter``)
must refuse to start.
"""

from __future__ import annotations

from motion import Component

Counter = Component("Counter")


@Counter.init_state
def setup() -> dict:
    return {"value": 0}


@Counter.update("add")
def add(state, props):
    return {"value": state["value"] + props["n"]}
