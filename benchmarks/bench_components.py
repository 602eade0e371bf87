"""Components the benchmark workers run (``celery -A workers worker -I bench_components``).

Each update op checks its own correctness as it goes: ``Counter`` counts updates
and counts an *order violation* whenever the update's ``i`` is not the previous
one plus 1, per producer. The raw-Celery baseline's no-op task is registered here
too, on the same app and queues motion's wake-ups use.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from motion import Component, DiscardPolicy
from motion.floor.celery_app import get_app
from motion.floor.connection import get_redis

#: per-call sleep of the "LLM-like" op (W5) and of the overloaded op (W8)
LLM_SECONDS = 0.1
BURST_OP_SECONDS = 0.02
#: NUM_NEW_UPDATES keeps only this many of the newest pending updates (W8)
BURST_KEEP = 5


def _count(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    producer = props.get("p", "")
    last = dict(state["last"])
    expected = last.get(producer, -1) + 1
    bad = state["violations"] + (0 if props["i"] == expected else 1)
    last[producer] = props["i"]
    return {"n": state["n"] + 1, "last": last, "violations": bad}


# -- W1 / W2: serve path --------------------------------------------------------
Serve = Component("BenchServe", cache_ttl=0)


@Serve.init_state
def serve_setup(size: int = 100) -> dict[str, Any]:
    return {"blob": b"x" * size, "n": 0, "last": {}, "violations": 0}


@Serve.serve(["read", "read_write"])
def serve_read(state: dict[str, Any], props: dict[str, Any]) -> int:
    return len(state["blob"])


@Serve.update("read_write")
def serve_write(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return _count(state, props)


# -- W3 / W4 / W6 / W7: ordered counter ---------------------------------------------
Counter = Component("BenchCounter", cache_ttl=0)


@Counter.init_state
def counter_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Counter.update("add")
def counter_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return _count(state, props)


# -- W5: an LLM-like op that waits 100 ms ---------------------------------------
Llm = Component("BenchLlm", cache_ttl=0)


@Llm.init_state
def llm_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Llm.update("ask")
def llm_ask(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    time.sleep(LLM_SECONDS)
    return _count(state, props)


# -- W10: LLM-scale concurrency (the wait comes in the update's props: ``s``) --------
Await = Component("BenchAwait", cache_ttl=0)


@Await.init_state
def await_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Await.update("ask")
async def await_ask(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    await asyncio.sleep(props["s"])  # an LLM call: the worker waits, its CPU is free
    return _count(state, props)


Sleep = Component("BenchSleep", cache_ttl=0)


@Sleep.init_state
def sleep_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Sleep.update("ask")
def sleep_ask(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    time.sleep(props["s"])  # the sync twin: a blocking client (gevent patches the sleep)
    return _count(state, props)


@Sleep.update("spin")
def sleep_spin(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    end = time.perf_counter() + props["s"]  # CPU-bound: never yields to another greenlet
    while time.perf_counter() < end:
        pass
    return _count(state, props)


# -- W11: Redis cost per update, many instances -------------------------------------
Wide = Component("BenchWide", cache_ttl=0)


@Wide.init_state
def wide_setup() -> dict[str, Any]:
    return {"n": 0, "last": {}, "violations": 0}


@Wide.update("add")
def wide_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return _count(state, props)


# -- W8: an op slower than the updates arrive ------------------------------------
Burst = Component("BenchBurst", cache_ttl=0)


@Burst.init_state
def burst_setup() -> dict[str, Any]:
    return {"calls": 0, "last_i": -1, "violations": 0}


@Burst.update("keep_newest", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=BURST_KEEP)
def burst_keep_newest(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    time.sleep(BURST_OP_SECONDS)
    bad = state["violations"] + (0 if props["i"] > state["last_i"] else 1)
    return {"calls": state["calls"] + 1, "last_i": props["i"], "violations": bad}


@Burst.update("batched", batch=True)
def burst_batched(state: dict[str, Any], props: list[dict[str, Any]]) -> dict[str, Any]:
    time.sleep(BURST_OP_SECONDS)
    seen = [p["i"] for p in props]
    in_order = seen == list(range(state["last_i"] + 1, state["last_i"] + 1 + len(seen)))
    bad = state["violations"] + (0 if in_order else 1)
    return {"calls": state["calls"] + 1, "last_i": seen[-1], "violations": bad}


# -- W0: the raw Celery floor, and the worker's readiness probe ----------------------
app = get_app()


@app.task(name="bench.noop", ignore_result=True)
def noop() -> None:
    """Does nothing: the cost of a Celery task on motion's worker configuration."""


@app.task(name="bench.stamp", ignore_result=True)
def stamp(key: str, sent_at: float) -> None:
    """Records how long after ``sent_at`` it started: the raw Celery latency (W6's floor)."""
    get_redis().rpush(key, time.time() - sent_at)


@app.task(name="bench.probe", ignore_result=True)
def probe(key: str) -> None:
    """Marks ``key`` in Redis: the worker consumes this queue."""
    get_redis().set(key, 1, ex=60)


# -- W9: idle instances ---------------------------------------------------------
Idle = Component("BenchIdle", cache_ttl=0)


@Idle.init_state
def idle_setup() -> dict[str, Any]:
    return {"n": 0}


@Idle.update("add")
def idle_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"n": state["n"] + 1}


# -- W12: a debounced batch op --------------------------------------------------
#: W12's op takes this long; its flow is debounced 0.5 s, at most 5 s
DEBOUNCE_OP_SECONDS = 0.05
#: W12's many pending debounces: none fires by itself during the run
IDLE_DEBOUNCE_SECONDS = 600
Debounced = Component("BenchDebounced", cache_ttl=0)


@Debounced.init_state
def debounced_setup() -> dict[str, Any]:
    return {"calls": 0, "events": 0, "last_i": -1, "violations": 0}


@Debounced.update("event", batch=True, debounce=0.5, max_wait=5)
def debounced_event(state: dict[str, Any], props: list[dict[str, Any]]) -> dict[str, Any]:
    time.sleep(DEBOUNCE_OP_SECONDS)
    seen = [p["i"] for p in props]
    in_order = seen == list(range(state["last_i"] + 1, state["last_i"] + 1 + len(seen)))
    return {
        "calls": state["calls"] + 1,
        "events": state["events"] + len(seen),
        "last_i": seen[-1],
        "violations": state["violations"] + (0 if in_order else 1),
    }


@Debounced.update("idle", batch=True, debounce=IDLE_DEBOUNCE_SECONDS)
def debounced_idle(state: dict[str, Any], props: list[dict[str, Any]]) -> dict[str, Any]:
    return {"events": state["events"] + len(props)}


# -- W9H: the same update with the default history, with none, and retained for replay
HistoryOn = Component("BenchHistoryOn", cache_ttl=0)  # history=20, the default
HistoryOff = Component("BenchHistoryOff", cache_ttl=0, history=0)


@HistoryOn.init_state
def history_on_setup() -> dict[str, Any]:
    return {"n": 0, "note": ""}


@HistoryOn.update("add")
def history_on_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"n": state["n"] + 1, "note": props["note"]}


@HistoryOff.init_state
def history_off_setup() -> dict[str, Any]:
    return {"n": 0, "note": ""}


@HistoryOff.update("add")
def history_off_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"n": state["n"] + 1, "note": props["note"]}


Retaining = Component("BenchRetaining", cache_ttl=0, history=0, retain_updates=20)


@Retaining.init_state
def retaining_setup() -> dict[str, Any]:
    return {"n": 0, "note": ""}


@Retaining.update("add")
def retaining_add(state: dict[str, Any], props: dict[str, Any]) -> dict[str, Any]:
    return {"n": state["n"] + 1, "note": props["note"]}
