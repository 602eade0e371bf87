"""``SlowRolling`` as the new code has it: flow ``slow``, whose op runs until the key
``slow:go`` exists (a slow LLM call the test ends when it chooses, 60 s at most)."""

from __future__ import annotations

import time

from motion import Component
from motion.floor.connection import get_redis

SlowRolling = Component("SlowRolling")


@SlowRolling.init_state
def setup() -> dict:
    return {"seqs": []}


@SlowRolling.update("base")
def base(state, props):
    return {"seqs": [*state["seqs"], props.seq]}


@SlowRolling.update("slow")
def slow(state, props):
    get_redis().set("slow:running", props.seq)
    deadline = time.monotonic() + 60
    while not get_redis().exists("slow:go"):
        if time.monotonic() > deadline:
            raise TimeoutError("the test never opened the gate")
        time.sleep(0.05)
    return {"seqs": [*state["seqs"], props.seq]}
