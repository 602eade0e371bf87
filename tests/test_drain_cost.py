"""The drain's own Redis cost (motion/floor/lua/begin.lua, commit.lua, linger.lua): the
commands a drain runs per update, the counters it keeps exact across commits and a
killed worker, and a lingering drain that neither delays a due timer nor a wake-up.

Real redis-server; the drains run in this process (``engine.drain``) or on real Celery
worker subprocesses.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import pytest

from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.tools import series
from motion.worker import engine
from tests.support import COMPONENTS, wait_for
from tests.test_linger import _covered, _task_results

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from flow_control import Flowy  # noqa: E402
from ops_tally import Tally  # noqa: E402
from pacing import Pace  # noqa: E402


def _commands(client: Any) -> int:
    """Every command Redis ran so far, those scripts ran included (``commandstats``)."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")


def _drain_cost(client: Any, handle: Any, n: int) -> int:
    """Enqueue ``n`` hits, then drain them in this process: the commands of the drain."""
    for _ in range(n):
        handle.run("hit")
    before = _commands(client)
    report = engine.drain(Tally, handle.instance_id)
    after = _commands(client)
    assert report.applied == n
    return after - before


def test_a_drain_of_one_update_runs_few_commands(redis_url) -> None:  # type: ignore[no-untyped-def]
    # begin (the lease, the window, the state) + one commit (history, per-minute
    # counters, release): the commit reads the meta by one HMGET and Redis' clock once,
    # the applied entries go by one HDEL, the window is read by one HMGET. The earlier
    # scripts ran 56 commands for this.
    client = get_redis()
    handle = Tally("lean")
    handle.read_state("count")
    _drain_cost(client, handle, 1)  # the first drain reads the state; later ones do not
    costs = [_drain_cost(client, handle, 1) for _ in range(5)]
    assert handle.read_state("count") == 6
    assert min(costs) <= 46, costs


def test_the_counters_agree_with_the_applied_updates_over_many_commits(redis_url) -> None:  # type: ignore[no-untyped-def]
    client = get_redis()
    handle = Tally("counted")
    total = 0
    for n in (1, 3, 7, 2):
        _drain_cost(client, handle, n)
        total += n
        handle.run("boom")
        engine.drain(Tally, handle.instance_id)
    stats = {k.decode(): int(v) for k, v in client.hgetall(K.stats("Tally")).items()}
    assert stats["applied:hit"] == total and stats["failed:boom"] == 4
    minutes = [m for m in series.minutes("Tally", hours=1) if m.flows]
    assert sum(m.count("applied") for m in minutes) == total
    assert sum(m.count("failed") for m in minutes) == 4
    assert sum(m.lag_n for m in minutes) == total + 4  # each update's enqueue -> commit
    keys = K.InstanceKeys.of(handle.instance_name)
    meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
    assert int(meta["applied"]) == int(meta["seq"]) == total + 4
    assert int(meta.get("pending:hit", "0")) == 0 and int(meta.get("pending:boom", "0")) == 0
    assert client.zcard(keys.failed) == 4 and client.hlen(keys.dead) == 4
    assert client.hlen(keys.inbox) == 0
    assert handle.read_state("count") == total


def test_counters_agree_with_the_applied_updates_after_a_worker_killed_mid_drain(
    start_worker,
) -> None:  # type: ignore[no-untyped-def]
    client = get_redis()
    handle = Tally("killed")
    handle.read_state("count")
    n = 30
    for _ in range(n):
        handle.run("nap", {"sleep": 0.2})  # one commit per update, 6 s in all
    first = start_worker(["ops_tally"], pool="prefork", concurrency=1, name="first")
    keys = K.InstanceKeys.of(handle.instance_name)
    wait_for(lambda: int(client.hget(keys.meta, "applied") or 0) >= 3, 30, "a few commits")
    first.kill()
    start_worker(["ops_tally"], pool="prefork", concurrency=1, name="second")
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == list(range(1, n + 1))
    stats = {k.decode(): int(v) for k, v in client.hgetall(K.stats("Tally")).items()}
    assert stats["applied:nap"] == n
    minutes = [m for m in series.minutes("Tally", hours=1) if m.flows]
    assert sum(m.count("applied") for m in minutes) == n
    assert sum(m.lag_n for m in minutes) == n


def test_a_lingering_drain_goes_through_a_debounce_when_it_is_due(start_worker) -> None:  # type: ignore[no-untyped-def]
    # the drain of a hot instance lingers (MOTION_LINGER_MS: 4 s here) after parking a
    # debounced update (0.4 s): its wait ends when the debounce is due, not 4 s later
    start_worker(
        ["flow_control"], pool="solo", concurrency=1, name="ling", env={"MOTION_LINGER_MS": "4000"}
    )
    handle = Flowy("lingers")
    for _ in range(3):  # windows of a steady stream: the instance is hot
        for _ in range(4):
            handle.run("note", {"x": 1})
        handle.flush_update("note", timeout=30)
    keys = K.InstanceKeys.of(handle.instance_name)
    wait_for(lambda: get_redis().hget(keys.meta, "linger"), 10, "the drain to linger")
    start = time.monotonic()
    handle.run("deb", {"x": 1})
    handle.flush_update("deb", timeout=30)
    took = time.monotonic() - start
    assert handle.read_state("batches") == [[[1], 0]]
    assert took < 2.5, f"the debounce fired {took:.2f} s after its update (lingered past it)"


def test_a_lingering_drain_commits_the_updates_that_piled_up_together(start_worker) -> None:  # type: ignore[no-untyped-def]
    # a hot instance whose op takes 4 ms, updated every 2 ms: while one update's op
    # runs, more arrive; the lingering drain takes them in one window and commits them
    # together (quick ops: up to engine.COMMIT_BUDGET; per-minute backlog_n counts one
    # sample per commit), and every update is in the seqs of the task that applied it
    worker = start_worker(["ops_tally"], pool="prefork", concurrency=1, name="piles")
    handle = Tally("piles")
    handle.read_state("count")
    n = 150
    pace = Pace(500)
    for _ in range(n):
        handle.run("nap", {"sleep": 0.004})
        pace.next()
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == list(range(1, n + 1))
    minutes = [m for m in series.minutes("Tally", hours=1) if m.flows]
    commits = sum(m.backlog_n for m in minutes)
    assert sum(m.count("applied") for m in minutes) == n
    assert commits <= n // 2, f"{commits} commits for {n} updates: each committed alone"
    results = wait_for(
        lambda: (r := _task_results(worker.log)) and _covered(r) >= set(range(1, n + 1)) and r,
        20,
        "the tasks' results to name every seq",
    )
    assert len(results) <= n // 5, f"{len(results)} tasks for {n} updates: no lingering"
