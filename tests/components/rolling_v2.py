"""``Rolling`` as the new code has it: flow ``new``, and op ``audit`` on flow ``old``."""

from __future__ import annotations

from motion import Component

Rolling = Component("Rolling")


@Rolling.init_state
def setup() -> dict:
    return {"seqs": [], "audited": []}


@Rolling.update("base")
def base(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@Rolling.update("old")
def add(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@Rolling.update("old")
def audit(state, props):
    return {"audited": [*state["audited"], props.seq]}


@Rolling.update("new")
def added_later(state, props):
    return {"seqs": [*state["seqs"], props.seq]}
