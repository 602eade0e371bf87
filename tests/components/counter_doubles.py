"""``Counter`` as another test module defines it: flow ``double`` doubles the value.

Same name as :mod:`counter_adds`, different flows: a worker importing both must
refuse to start.
"""

from __future__ import annotations

from motion import Component

Counter = Component("Counter")


@Counter.init_state
def setup() -> dict:
    return {"value": 1}


@Counter.update("double")
def double(state, props):
    return {"value": state["value"] * 2}
