"""The instance handle API on a real redis-server, with the in-process Celery worker."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import threading
from pathlib import Path

import cloudpickle
import pytest

from motion import Component, FlushTimeoutError, UpdateFailedError
from motion.floor import keys as K
from tests.support import ROOT, bump_version, commands_sent

pytestmark = pytest.mark.integration

Shop = Component("Shop", cache_ttl=0)


@Shop.init_state
def setup(owner: str = "nobody") -> dict:
    return {"owner": owner, "queries": [], "ids": []}


@Shop.serve("ask")
def ask(state, props):
    props["length"] = len(props["q"])  # visible to the update op
    return f"{state['owner']} asked {len(state['queries'])} before"


@Shop.update("ask")
def remember(state, props):
    return {"queries": [*state["queries"], (props["q"], props["length"], props.serve_result)]}


@Shop.update("ask")
def second_op(state, props):
    # runs after `remember`, on the state it produced
    return {"ids": [*state["ids"], (state.instance_id, len(state["queries"]))]}


@Shop.serve("peek")
def peek(state):
    return list(state["queries"])


@Shop.update("log_only")
async def log_only(state, props):
    await asyncio.sleep(0)
    return {"queries": [*state["queries"], ("async", props["n"], None)]}


@Shop.update("boom")
def boom(state, props):
    raise RuntimeError("refused")


@Shop.serve("stream")
def stream(state, props):
    yield from range(props["n"])


@Shop.update("stream")
def after_stream(state, props):
    return {"ids": [*state["ids"], ("streamed", props.serve_result)]}


@Shop.serve("astream")
async def astream(state, props):
    for i in range(props["n"]):
        await asyncio.sleep(0)
        yield i


_running = 0
_peak = 0


@Shop.serve("slow_async")
async def slow_async(state, props):
    global _running, _peak
    _running += 1
    _peak = max(_peak, _running)
    await asyncio.sleep(0.05)
    _running -= 1
    return props["i"]


def test_run_serves_inline_and_updates_in_the_background(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("alice", init_state_params={"owner": "alice"})
    assert handle.run("ask", {"q": "red shoes"}, flush_update=True) == "alice asked 0 before"
    assert handle.run("ask", {"q": "blue hat"}) == "alice asked 1 before"
    handle.flush_update(timeout=30)
    assert handle.read_state("queries") == [
        ("red shoes", 9, "alice asked 0 before"),
        ("blue hat", 8, "alice asked 1 before"),
    ]
    assert handle.read_state("ids") == [("alice", 1), ("alice", 2)]
    assert handle.get_version() == 3
    assert handle.read_state("missing", default_value="dflt") == "dflt"


def test_serve_only_and_update_only_flows(inprocess, redis_server) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("bob")
    assert handle.run("peek") == []
    meta = redis_server.client().hget(K.InstanceKeys.of(handle.instance_name).meta, "seq")
    assert meta == b"0"  # a serve-only flow enqueues nothing
    assert handle.run("log_only", {"n": 1}) is None
    handle.flush_update("log_only", timeout=30)
    assert handle.run("peek") == [("async", 1, None)]


def test_update_only_flow_creates_a_new_instance(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("fresh", init_state_params={"owner": "fresh"})
    handle.run("log_only", {"n": 7}, flush_update=True)
    assert handle.read_state("owner") == "fresh"


def test_write_state_is_ordered_with_pending_updates(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("carol")
    for n in range(5):
        handle.run("log_only", {"n": n})
    handle.write_state({"queries": ["overwritten"]})
    assert handle.read_state("queries") == ["overwritten"]  # applied after the 5 updates
    handle.write_state({})  # a no-op
    assert handle.get_version() == 7


def test_generators_stream_and_run_returns_the_list(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("dave")
    assert list(handle.gen("stream", {"n": 3})) == [0, 1, 2]
    assert handle.run("stream", {"n": 2}, flush_update=True) == [0, 1]
    assert handle.read_state("ids") == [("streamed", [0, 1, 2]), ("streamed", [0, 1])]

    async def collect() -> list[int]:
        return [item async for item in handle.agen("astream", {"n": 4})]

    assert asyncio.run(collect()) == [0, 1, 2, 3]
    assert handle.run("astream", {"n": 2}) == [0, 1]


def test_arun_calls_overlap_in_one_event_loop(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("erin")

    async def many() -> list[int]:
        return await asyncio.gather(*(handle.arun("slow_async", {"i": i}) for i in range(100)))

    assert asyncio.run(many()) == list(range(100))
    assert _peak >= 50, f"only {_peak} arun calls overlapped"

    async def with_update() -> None:
        await handle.arun("ask", {"q": "async"}, flush_update=True)

    asyncio.run(with_update())
    assert handle.read_state("queries")[-1][0] == "async"


def test_racing_callers_create_an_instance_once(inprocess) -> None:  # type: ignore[no-untyped-def]
    results: list[int] = []

    def create(i: int) -> None:
        handle = Shop("race", init_state_params={"owner": f"caller-{i}"})
        results.append(handle.get_version())

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [1] * 8
    owners = {Shop("race").read_state("owner")}
    assert len(owners) == 1 and owners.pop().startswith("caller-")


def test_flush_update_times_out_with_advice_when_no_worker_runs(redis_url) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("nobody-home")
    handle.run("log_only", {"n": 1})
    with pytest.raises(FlushTimeoutError, match="Is a worker running"):
        handle.flush_update(timeout=0.3)


def test_embedded_default_needs_no_setup(tmp_path: Path) -> None:
    script = tmp_path / "notebook.py"
    script.write_text(
        "from motion import Component\n"
        "from motion.floor.embedded import embedded_pid\n"
        "C = Component('Embedded')\n"
        "@C.init_state\n"
        "def setup():\n    return {'n': 0}\n"
        "@C.serve('inc')\n"
        "def serve(state, props):\n    return state['n']\n"
        "@C.update('inc')\n"
        "def update(state, props):\n    return {'n': state['n'] + 1}\n"
        "h = C('me')\n"
        "for _ in range(3):\n    h.run('inc', flush_update=True)\n"
        "print(h.run('inc'), embedded_pid())\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    env["MOTION_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    value, pid = out.stdout.split()
    assert value == "3"
    assert (tmp_path / "home" / "data").is_dir()  # the server's data lives in MOTION_HOME
    with pytest.raises(ProcessLookupError):  # and the server stopped when the script exited
        os.kill(int(pid), 0)


# -- serving on the local copy, the serve cache, Motion's keyword names ----------------
Menu = Component("Menu", cache_ttl=0)
Cached = Component("Multiplier")  # Motion's default: serve results cached for a day


@Menu.init_state
def menu_setup() -> dict:
    return {"dish": "soup", "orders": []}


@Menu.serve("order")
def menu_serve(state, props):
    return f"{props['who']} gets {state['dish']}"


@Menu.update("order")
def menu_update(state, props):
    return {"orders": [*state["orders"], props.serve_result]}


@Cached.init_state
def cached_setup() -> dict:
    return {"value": 2, "seen": []}


@Cached.serve("multiply")
def cached_serve(state, props):
    props["something"] = props["value"] * 10  # for the update op (Motion's docs example)
    return state["value"] * props["value"]


@Cached.update("multiply")
def cached_update(state, props):
    return {"seen": [*state["seen"], (props["something"], props.serve_result)]}


def _calls(client, command: str) -> int:  # type: ignore[no-untyped-def]
    return int(client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0))


def test_a_quick_serve_on_an_unchanged_state_takes_one_round_trip(redis_url, redis_server):  # type: ignore[no-untyped-def]
    handle = Menu("table-1")  # no worker here: only this caller talks to Redis
    for who in ("ann", "bob"):  # learn that the serve op is quick; settle the local copy
        handle.run("order", {"who": who})
    sent = commands_sent(redis_server.client(), lambda: handle.run("order", {"who": "cy"}))
    assert sent == ["EVALSHA"], sent
    assert handle.run("order", {"who": "dee"}) == "dee gets soup"
    assert int(redis_server.client().hget(K.InstanceKeys.of(handle.instance_name).meta, "seq")) == 4


def test_serving_on_a_stale_copy_is_redone_on_the_committed_state(inprocess, redis_server):  # type: ignore[no-untyped-def]
    handle = Menu("table-2")
    for who in ("ann", "bob"):
        handle.run("order", {"who": who}, flush_update=True)
    # another process commits a change this process has not read yet
    keys = K.InstanceKeys.of(handle.instance_name)
    client = redis_server.client()
    client.hset(keys.state, "dish", cloudpickle.dumps("stew"))
    bump_version(client, keys.meta)
    assert handle.run("order", {"who": "cy"}, flush_update=True) == "cy gets stew"
    assert handle.read_state("orders")[-1] == "cy gets stew"
    assert int(client.hget(keys.meta, "seq")) == 3  # one update for one run


def test_a_cache_hit_gives_the_update_op_the_props_its_serve_op_added(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Cached("docs-example")
    assert handle.run("multiply", {"value": 3}, flush_update=True) == 6
    assert handle.run("multiply", {"value": 4}) == 8
    assert handle.run("multiply", {"value": 4}) == 8  # served from the cache
    handle.flush_update(timeout=30)
    assert handle.read_state("seen") == [(30, 6), (40, 8), (40, 8)]


def test_force_refresh_serves_fresh_and_leaves_failures_to_flush(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Shop("frank", init_state_params={"owner": "frank"})
    handle.run("ask", {"q": "a"})
    handle.run("boom")
    assert handle.run("peek", force_refresh=True)[0][0] == "a"  # waited; did not raise
    with pytest.raises(UpdateFailedError, match="refused"):
        handle.flush_update(timeout=30)  # the failure is still reported, by the flush
    with pytest.raises(TypeError, match="two flows"):
        handle.run("peek", dataflow_key="ask")
    # Motion's keyword names work too
    assert handle.run(dataflow_key="ask", props={"q": "b"}) == "frank asked 1 before"
    handle.flush_update(dataflow_key="ask", timeout=30)
    assert [q[0] for q in handle.read_state("queries")] == ["a", "b"]


def test_async_calls_report_an_unreachable_redis_clearly(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from motion import ConnectionFailedError
    from motion.floor.embedded import free_port
    from tests.conftest import reset_motion

    monkeypatch.setenv("MOTION_REDIS_URL", f"redis://:hunter2@127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    reset_motion()
    try:
        with pytest.raises(ConnectionFailedError, match="cannot reach Redis") as failed:
            asyncio.run(Shop("gina").arun("ask", {"q": "x"}))
        assert "hunter2" not in str(failed.value)
        with pytest.raises(ConnectionFailedError):
            asyncio.run(Shop("gina").aflush_update(timeout=1))
    finally:
        reset_motion()


Streams = Component("Streams")


@Streams.init_state
def streams_setup() -> dict[str, int]:
    return {"n": 0}


@Streams.serve("draw")
def streams_draw(state, props):  # type: ignore[no-untyped-def]
    for _ in range(3):
        yield secrets.token_hex(4)


@Streams.serve("adraw")
async def streams_adraw(state, props):  # type: ignore[no-untyped-def]
    for _ in range(3):
        yield secrets.token_hex(4)


def test_streamed_results_are_cached_like_run_results(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Streams("s")
    first = list(handle.gen("draw", props={"k": 1}))
    assert list(handle.gen("draw", props={"k": 1})) == first  # as Motion cached them
    assert list(handle.gen("draw", props={"k": 2})) != first
    assert list(handle.gen("draw", props={"k": 1}, ignore_cache=True)) != first

    async def collect(**options: object) -> list[str]:
        return [item async for item in handle.agen("adraw", props={"k": 1}, **options)]

    once = asyncio.run(collect())
    assert asyncio.run(collect()) == once
    assert asyncio.run(collect(ignore_cache=True)) != once
