"""Client tracking (MOTION_CLIENT_TRACKING=1): no round trip for unchanged state, and
every commit still seen, also when the invalidation connection drops."""

from __future__ import annotations

import cloudpickle
import pytest

from motion import Component
from motion.caller.tracking import get_tracker
from motion.floor import keys as K
from tests.support import bump_version, wait_for

pytestmark = pytest.mark.integration

Tracked = Component("Tracked", cache_ttl=0)


@Tracked.init_state
def setup() -> dict:
    return {"v": 0}


@Tracked.serve("get")
def get(state, props):
    return state["v"]


def hget_calls(client) -> int:  # type: ignore[no-untyped-def]
    stats = client.info("commandstats").get("cmdstat_hget", {})
    return int(stats.get("calls", 0))


def commit_elsewhere(client, value: int) -> None:  # type: ignore[no-untyped-def]
    """What a worker's commit does to the keys a serve reads."""
    keys = K.InstanceKeys.of("Tracked__t")
    client.hset(keys.state, "v", cloudpickle.dumps(value))
    bump_version(client, keys.meta)


@pytest.fixture
def tracking(redis_url, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_CLIENT_TRACKING", "1")
    from tests.conftest import reset_motion

    reset_motion()


def test_unchanged_state_is_served_without_asking_redis(tracking, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    handle = Tracked("t")
    assert handle.run("get") == 0
    handle.run("get")  # confirms the copy through a tracked read
    before = hget_calls(client)
    assert [handle.run("get") for _ in range(200)] == [0] * 200
    assert hget_calls(client) == before  # no version check went to Redis


def test_commits_are_seen_and_a_dropped_listener_is_survived(tracking, redis_server) -> None:  # type: ignore[no-untyped-def]
    client = redis_server.client()
    handle = Tracked("t")
    handle.run("get")
    handle.run("get")
    for value in range(1, 6):
        commit_elsewhere(client, value)
        wait_for(lambda v=value: handle.run("get") == v, 5, f"the serve to see version {value}")
    # drop the invalidation connection: copies are distrusted, then trusted again
    killed = client.client_kill_filter(_type="pubsub")
    assert killed >= 1
    commit_elsewhere(client, 42)
    wait_for(lambda: handle.run("get") == 42, 10, "the serve to see the commit after the drop")
    from motion.floor.connection import redis_url as current_url

    wait_for(lambda: get_tracker(current_url()).client() is not None, 10, "the listener to return")
    commit_elsewhere(client, 43)
    wait_for(lambda: handle.run("get") == 43, 5, "a commit after the listener came back")
