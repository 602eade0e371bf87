"""A Motion 0.1.132 program's names, keywords, options and tools work unchanged.

Written as a Motion user writes tests: components at module level, Motion's import
paths, Motion's keywords (``flow_key=``), ``except RuntimeError`` around a flushed
run, Motion's handle options, ``motion vis`` and ``motion init``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path

import pytest
import yaml

from motion import Component
from motion.tools.cli import main as motion_cli

Counter = Component("CompatCounter")


@Counter.init_state
def setup():  # type: ignore[no-untyped-def]
    return {"value": 0}


@Counter.serve("number")
def current(state, props):  # type: ignore[no-untyped-def]
    return state["value"], props["value"]


@Counter.update("number")
def add(state, props):  # type: ignore[no-untyped-def]
    return {"value": state["value"] + props["value"]}


@Counter.serve("peek")
def peek(state, props):  # type: ignore[no-untyped-def]
    return state["value"]


@Counter.serve("count_to")
def count_to(state, props):  # type: ignore[no-untyped-def]
    yield from range(props["n"])


Something = Component("CompatSomething")


@Something.init_state
def something_setup():  # type: ignore[no-untyped-def]
    return {"state_val": 0}


# -- Motion's import paths -------------------------------------------------------------
def test_motion_import_paths() -> None:
    import motion
    from motion.caller.handle import ComponentInstance
    from motion.copy_utils import copy_db
    from motion.dicts import Properties, State
    from motion.discard_policy import DiscardPolicy
    from motion.migrate import MigrationResult, StateMigrator
    from motion.server.application import Application
    from motion.utils import (
        RedisParams,
        clear_instance,
        get_instances,
        get_redis_params,
        inspect_state,
    )

    assert ComponentInstance is motion.ComponentInstance is motion.Instance
    assert (StateMigrator, MigrationResult) == (motion.StateMigrator, motion.MigrationResult)
    assert (Properties, State, DiscardPolicy) == (
        motion.Properties,
        motion.State,
        motion.DiscardPolicy,
    )
    assert (clear_instance, inspect_state, get_instances) == (
        motion.clear_instance,
        motion.inspect_state,
        motion.get_instances,
    )
    assert (Application, copy_db, RedisParams) == (
        motion.Application,
        motion.copy_db,
        motion.RedisParams,
    )
    assert isinstance(get_redis_params(), RedisParams)


def test_redis_params_dict_like_motions_pydantic_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from motion.utils import RedisParams

    monkeypatch.setenv("MOTION_REDIS_HOST", "redis.internal")
    monkeypatch.setenv("MOTION_REDIS_PORT", "6381")
    monkeypatch.setenv("MOTION_REDIS_PASSWORD", "None")  # what str(None) in a .motionrc.yml gives
    rp = RedisParams()
    expected = {"host": "redis.internal", "port": 6381, "db": 0, "password": None, "ssl": False}
    assert rp.dict() == expected
    assert rp.model_dump() == expected
    assert RedisParams(config=None).config is None  # Motion's test set-up passes config=


# -- flow_key, Motion 0.1.132's keyword ------------------------------------------------
def test_flow_key_keyword(redis_url: str) -> None:
    c = Counter("flow-key")
    assert c.run(flow_key="peek") == 0
    assert c.run("peek", flow_key="peek") == 0
    assert c.run(dataflow_key="peek") == 0
    assert list(c.gen(flow_key="count_to", props={"n": 3})) == [0, 1, 2]

    async def go() -> tuple[object, list[int]]:
        served = await c.arun(flow_key="peek")
        items = [i async for i in c.agen(flow_key="count_to", props={"n": 2})]
        await c.aflush_update(flow_key="number")
        return served, items

    assert asyncio.run(go()) == (0, [0, 1])
    c.flush_update(flow_key="number")


def test_two_different_flows_named_is_a_type_error(redis_url: str) -> None:
    c = Counter("two-flows")
    with pytest.raises(TypeError, match="flow_key='number'"):
        c.run("peek", flow_key="number")
    with pytest.raises(TypeError):
        c.flush_update("peek", flow_key="number")


# -- Motion's exception types ----------------------------------------------------------
def test_failed_flushed_update_is_caught_as_runtime_error(inprocess) -> None:  # type: ignore[no-untyped-def]
    c = Counter("fails")
    try:
        c.run("number", props={"value": [1]}, flush_update=True)  # int + list fails
    except RuntimeError as exc:
        assert "TypeError" in str(exc)
    else:
        pytest.fail("the failed update was not reported")
    with pytest.raises(KeyError):
        c.run("no-such-flow")
    with pytest.raises(ValueError):
        Component("CompatBadPolicy").update("number", discard_after=3)(lambda state, props: {})


def test_migrate_function_returning_non_dict_raises_assertion_error(inprocess) -> None:  # type: ignore[no-untyped-def]
    from motion.migrate import StateMigrator

    ids = []
    for _ in range(3):
        s = Something()
        s.read_state("state_val")
        ids.append(s.instance_id)

    def not_a_dict(state):  # type: ignore[no-untyped-def]
        return "this isn't a dict"

    with pytest.raises(AssertionError, match="dict"):
        StateMigrator(Something, not_a_dict).migrate(ids)
    assert [Something(i).read_state("state_val") for i in ids] == [0, 0, 0]


# -- Motion's handle options -----------------------------------------------------------
def test_update_task_type_is_checked(redis_url: str) -> None:
    assert Counter("threaded", update_task_type="thread").run("peek") == 0
    assert Counter("processed", update_task_type="process").run("peek") == 0
    with pytest.raises(ValueError, match="'thread' or 'process'"):
        Counter("fiber", update_task_type="fiber")


def test_disable_update_task(redis_url: str) -> None:
    c = Counter("read-only", disable_update_task=True)
    assert c.run("peek") == 0  # a flow without update ops still runs
    with pytest.raises(RuntimeError, match="disable_update_task"):
        c.run("number", props={"value": 1})
    with pytest.raises(RuntimeError):
        c.flush_update()
    with pytest.raises(ValueError, match="flush_on_exit"):
        Counter("both", disable_update_task=True, flush_on_exit=True)


def test_misspelled_option_is_a_type_error_naming_the_valid_ones(redis_url: str) -> None:
    with pytest.raises(TypeError, match="disable_updates_task") as raised:
        Counter("typo", disable_updates_task=True)
    assert "disable_update_task" in str(raised.value).split("valid keywords:")[1]


def test_other_options_are_accepted(redis_url: str) -> None:
    motion_logger = logging.getLogger("motion")
    before = motion_logger.level
    try:
        c = Counter(
            "options",
            logging_level="DEBUG",
            config_path="my.motionrc.yml",
            redis_socket_timeout=5,
            flush_on_exit=True,
        )
        assert motion_logger.level == logging.DEBUG
        assert c.run("peek") == 0
        c.shutdown(wait_for_logging_threads=True)
        c.close(wait_for_logging_threads=False)
    finally:
        motion_logger.setLevel(before)
    with pytest.raises(ValueError, match="logging level"):
        Counter("bad-level", logging_level="LOUD")


# -- get_graph and motion vis ----------------------------------------------------------
Pipeline = Component("CompatPipeline")


@Pipeline.serve("ask")
def answer(state, props):  # type: ignore[no-untyped-def]
    return "ok"


@Pipeline.update("ask")
def remember(state, props):  # type: ignore[no-untyped-def]
    return {}


@Pipeline.update("ask")
def summarize(state, props):  # type: ignore[no-untyped-def]
    return {}


@Pipeline.update("feedback")
def learn(state, props):  # type: ignore[no-untyped-def]
    return {}


def _shape(graph: dict) -> tuple:  # type: ignore[type-arg]
    nodes = {
        n["id"]: (n["type"], n["data"]["label"], n["position"]["x"], n["position"]["y"])
        for n in graph["nodes"]
    }
    edges = sorted(
        (e["source"], e["target"], e.get("sourceHandle"), e.get("targetHandle"))
        for e in graph["edges"]
    )
    return graph["name"], nodes, edges


def test_get_graph_is_motions_react_flow_layout() -> None:
    graph = Pipeline.get_graph()
    assert set(graph) == {"name", "nodes", "edges"}
    name, nodes, edges = _shape(graph)
    assert name == "CompatPipeline"
    assert nodes == {
        "1": ("state", "state", 1000, 0),  # centred on the widest row (x up to 2000)
        "2": ("key", "ask", 0, 200),
        "3": ("serve", "answer", 200, 200),
        "4": ("update", "remember", 800, 200),
        "5": ("update", "summarize", 1400, 200),
        "6": ("key", "feedback", 0, 300),
        "7": ("update", "learn", 800, 300),
    }
    assert edges == sorted(
        [
            ("2", "3", None, "left"),
            ("1", "3", None, "top"),
            ("4", "1", "top", None),
            ("3", "4", "right", "left"),
            ("5", "1", "top", None),
            ("3", "5", "right", "left"),
            ("7", "1", "top", None),
            ("6", "7", None, "left"),
        ]
    )
    serve = next(n for n in graph["nodes"] if n["type"] == "serve")
    assert "def answer(state, props)" in serve["data"]["udf"]
    assert _shape(Pipeline.get_graph(x_offset_step=100))[1]["5"] == (
        "update",
        "summarize",
        400,
        200,
    )


def test_motion_vis_writes_the_graph(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "main.py").write_text(
        "from motion import Component\n"
        "VisComponent = Component('CompatVis')\n"
        "@VisComponent.serve('ask')\n"
        "def answer(state, props):\n"
        "    return 1\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert motion_cli(["vis", "main.py:VisComponent", "--output", "graph.json"]) == 0
    graph = json.loads((tmp_path / "graph.json").read_text())
    assert graph["name"] == "CompatVis"
    assert [n["type"] for n in graph["nodes"]] == ["key", "serve", "state"]
    assert motion_cli(["vis", "main.py:Missing"]) == 1
    assert motion_cli(["vis", "main.py"]) == 1


def test_motion_init_writes_a_motionrc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HOST", "PORT", "DB", "PASSWORD", "SSL"):
        monkeypatch.delenv(f"MOTION_REDIS_{name}", raising=False)
    monkeypatch.delenv("MOTION_ENV", raising=False)
    monkeypatch.setenv("MOTION_REDIS_PORT", "6381")
    assert motion_cli(["init"]) == 0
    config = yaml.safe_load((tmp_path / ".motionrc.yml").read_text())
    assert config == {
        "MOTION_REDIS_HOST": "localhost",
        "MOTION_REDIS_PORT": 6381,
        "MOTION_REDIS_DB": 0,
        "MOTION_REDIS_PASSWORD": None,
        "MOTION_REDIS_SSL": False,
        "MOTION_ENV": "prod",
    }
    (tmp_path / ".motionrc.yml").write_text("MOTION_REDIS_PORT: 7000\n")
    assert motion_cli(["init"]) == 0  # an existing file is left alone, as Motion did
    assert (tmp_path / ".motionrc.yml").read_text() == "MOTION_REDIS_PORT: 7000\n"
