"""A component whose update op awaits (an LLM call of ``props['s']`` seconds), for the
worker's event loop tests.

``Waits.ask`` awaits ``asyncio.sleep(props['s'])`` then counts the update and its seq;
``Waits.flaky`` fails its first attempt (``props['fail']`` names a file it creates),
then awaits like ``ask`` (the retry's back-off and the await both on the loop);
``Waits.settle`` is ``ask`` debounced (flow control: its updates are parked, then
released, and awaited on the loop).
"""

from __future__ import annotations

import asyncio
import os

from motion import Component

Waits = Component("Waits")


@Waits.init_state
def setup() -> dict:
    return {"n": 0, "seqs": []}


@Waits.update("ask")
async def ask(state, props):
    await asyncio.sleep(props.get("s", 1.0))
    return {"n": state["n"] + 1, "seqs": [*state["seqs"], props.seq]}


@Waits.update("flaky", retries=1)
async def flaky(state, props):
    marker = props["fail"]
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError("first attempt fails on purpose")
    await asyncio.sleep(props.get("s", 0.1))
    return {"n": state["n"] + 1, "seqs": [*state["seqs"], props.seq]}


@Waits.update("settle", debounce=0.2)
async def settle(state, props):
    await asyncio.sleep(props.get("s", 1.0))
    return {"n": state["n"] + 1, "seqs": [*state["seqs"], props.seq]}
