"""motion.testing: a private server and in-process worker for user tests."""

from __future__ import annotations

import redis

from motion import Component
from motion.floor.settings import get_settings
from motion.testing import local_motion

Counter = Component("TestingCounter")


@Counter.init_state
def setup() -> dict:
    return {"n": 0}


@Counter.serve("inc")
def current(state, props):
    return state["n"]


@Counter.update("inc")
def inc(state, props):
    return {"n": state["n"] + props.get("by", 1)}


def test_local_motion_runs_components_for_real_and_cleans_up() -> None:
    before = get_settings()
    with local_motion() as url:
        handle = Counter("c")
        assert handle.run("inc", {"by": 2}, flush_update=True) == 0
        assert handle.run("inc") == 2
        handle.flush_update(timeout=30)
        assert handle.read_state("n") == 3
    assert get_settings() == before
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).ping()
        raise AssertionError("the private server still answers")
    except redis.ConnectionError:
        pass
