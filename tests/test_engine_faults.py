"""Engine faults off the battery's path: rolling deploys, raising hooks, unreadable
states, ops holding the GIL past the lease, Redis at maxmemory, skewed clocks, big
payloads. Real redis-server, real Celery worker subprocesses where a test needs one.
"""

from __future__ import annotations

import importlib
import json
import os
import signal
import sys
from pathlib import Path

import pytest

from motion import RedisFullError, UpdateFailedError
from motion.floor import keys as K
from motion.floor import scripts, wakeup
from motion.floor.connection import get_redis
from motion.floor.serde import dump_stored
from motion.tools import admin
from motion.worker import engine
from tests.conftest import reset_motion
from tests.support import COMPONENTS, ROOT, RedisServer, Worker, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from engine_faults import Batches, Effects, Hooks, Tally  # noqa: E402
from rolling_v2 import Rolling  # noqa: E402  (the callers have the new code)


def meta(name: str) -> dict[str, str]:
    raw = get_redis().hgetall(K.InstanceKeys.of(name).meta)
    return {k.decode(): v.decode() for k, v in raw.items()}


def held(name: str) -> dict[str, object] | None:
    raw = meta(name).get("held")
    return json.loads(raw) if raw else None


# -- item 3: rolling deploys -------------------------------------------------------------


def test_an_update_needing_new_code_waits_for_a_worker_that_has_it(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    old = start_worker(["rolling_v1"], pool="solo", concurrency=1, name="old")
    handle = Rolling("deploy")
    name = handle.instance_name
    handle.run("base", {})  # 1: both versions have it
    handle.run("new", {})  # 2: only the new code has flow "new"
    handle.run("base", {})  # 3: must not be applied before 2
    wait_for(lambda: held(name), 30, "the old worker to leave the instance held")
    reason = held(name)
    assert reason is not None
    assert reason["held"] == "waiting for code" and reason["seq"] == 2
    assert "'new'" in str(reason["error"])
    client, keys = get_redis(), K.InstanceKeys.of(name)
    assert int(meta(name)["applied"]) == 1, "the update before it commits; none after it"
    assert client.zcard(keys.failed) == 0, "an update nobody here can apply is not a failure"
    assert sorted(int(s) for s in client.hkeys(keys.inbox)) == [2, 3]
    [status] = admin.status(["Rolling"])
    assert status.failed == 0 and status.pending_updates == 2
    assert status.held[name].startswith("waiting for code")
    # the sweeper re-wakes it later and later (no hot loop): begin keeps the back-off
    wait_for(lambda: int(meta(name).get("sweeps", 0)) >= 2, 30, "two sweeper re-wakes")
    assert int(meta(name)["applied"]) == 1 and client.zcard(keys.failed) == 0
    start_worker(["rolling_v2"], pool="solo", concurrency=1, name="new")
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == [1, 2, 3]
    assert held(name) is None and client.zscore(K.HELD, name) is None
    assert admin.status(["Rolling"])[0].held == {}
    assert "waits for code" in old.log.read_text()


def test_an_update_naming_an_op_or_a_class_the_worker_lacks_waits(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_worker(["rolling_v1"], pool="solo", concurrency=1, name="old")
    handle = Rolling("ops")
    handle.run("old", {})  # the new code runs two ops for "old": add and audit
    # a module only the callers (and later the new worker) have, as a new release would
    (tmp_path / "new_release").mkdir()
    (tmp_path / "new_release" / "notes.py").write_text(
        "class Note:\n    def __init__(self, text):\n        self.text = text\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "new_release"))
    notes = importlib.import_module("notes")
    noted = Rolling("class")
    noted.run("base", {"note": notes.Note("only the new code can unpickle this")})
    wait_for(lambda: held(handle.instance_name), 30, "the instance held")
    reason = held(handle.instance_name)
    assert reason is not None and "audit" in str(reason["error"])
    assert handle.read_state("seqs") == [], "the old worker ran no op of it (not half of it)"
    wait_for(lambda: held(noted.instance_name), 30, "the other instance held")
    reason = held(noted.instance_name)
    assert reason is not None and "notes" in str(reason["error"])
    assert get_redis().zcard(K.InstanceKeys.of(noted.instance_name).failed) == 0
    with pytest.raises(Exception, match="held"):  # the timeout names the reason
        handle.flush_update(timeout=0.5)
    env = {
        "PYTHONPATH": os.pathsep.join([str(tmp_path / "new_release"), str(COMPONENTS), str(ROOT)])
    }
    start_worker(["rolling_v2"], pool="solo", concurrency=1, name="new", env=env)
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == [1] and handle.read_state("audited") == [1]
    noted.flush_update(timeout=60)
    assert noted.read_state("seqs") == [1]


# -- item 4: raising hooks, unreadable states, BaseExceptions ----------------------------


@pytest.fixture
def hooks_worker(start_worker, tmp_path: Path):  # type: ignore[no-untyped-def]
    alerts = tmp_path / "alerts"
    env = {"MOTION_TEST_ALERTS": str(alerts)}
    worker = start_worker(["engine_faults"], pool="solo", concurrency=1, name="h", env=env)
    return worker, alerts


def test_a_raising_save_state_hook_is_one_failure_and_the_instance_moves_on(
    redis_url: str,
    hooks_worker,  # type: ignore[no-untyped-def]
) -> None:
    handle = Hooks("save")
    handle.run("add", {"text": "fine"})
    handle.run("add", {"text": "boom"})  # save_state raises for this one
    handle.run("add", {"text": "after"})
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=30)
    [failure] = raised.value.failures
    assert (failure.seq, failure.op, failure.error_type) == (2, "save_state", "RuntimeError")
    assert handle.read_state("seqs") == [1, 3]


def test_a_base_exception_from_an_op_is_a_recorded_failure(
    redis_url: str,
    hooks_worker,  # type: ignore[no-untyped-def]
) -> None:
    worker, _ = hooks_worker
    handle = Hooks("base")
    handle.run("base", {})
    handle.run("base", {"raise": True})
    handle.run("base", {})
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=30)
    [failure] = raised.value.failures
    assert (failure.seq, failure.error_type) == (2, "Interrupted")
    assert handle.read_state("seqs") == [1, 3]
    assert worker.proc.poll() is None


def test_an_unreadable_state_holds_the_instance_and_fails_no_update(
    redis_url: str,
    hooks_worker,  # type: ignore[no-untyped-def]
) -> None:
    _, alerts = hooks_worker
    handle = Hooks("corrupt")
    handle.run("add", {"text": "one"}, flush_update=True)
    client, keys = get_redis(), K.InstanceKeys.of(handle.instance_name)
    [saved_field] = client.hkeys(keys.state)
    client.hset(keys.state, saved_field, b"not a pickled state")
    # written behind the worker's cached copy: a new version tag, as a commit makes
    version = client.hincrby(keys.meta, "version", 1)
    client.hset(keys.meta, "tag", f"{version}.{client.hget(keys.meta, 'inc').decode()}.edit")
    handle.run("add", {"text": "two"})
    handle.run("add", {"text": "three"})
    name = handle.instance_name
    wait_for(lambda: held(name), 30, "the instance held for its state")
    reason = held(name)
    assert reason is not None and reason["held"] == "state unreadable"
    wait_for(alerts.exists, 10, "the on_state_error hook")
    assert alerts.read_text().startswith(f"{name} ")
    assert client.zcard(keys.failed) == 0, "a bad state is no update's fault"
    assert client.hlen(keys.inbox) == 2
    assert admin.status(["Hooks"])[0].held[name].startswith("state unreadable")
    # repaired (as an operator restoring a backup would): the updates apply in order
    good = dump_stored(Hooks.serializer, "state", {"seqs": [1], "last": "one"}, 1 << 20)
    client.hset(keys.state, saved_field, good)
    handle.flush_update(timeout=120)
    assert handle.read_state("seqs") == [1, 2, 3]
    assert held(name) is None


def test_process_exit_in_an_op_leaves_the_update_pending_and_frees_the_lease(
    redis_url: str,
) -> None:
    handle = Hooks("exit")
    handle.run("exit", {})
    client, keys = get_redis(), K.InstanceKeys.of(handle.instance_name)
    with pytest.raises(KeyboardInterrupt):
        engine.drain(Hooks, "exit")
    assert client.hlen(keys.inbox) == 1 and int(meta(handle.instance_name)["applied"]) == 0
    assert client.zcard(keys.failed) == 0
    assert not client.exists(keys.lease), "the lease goes now, for the next worker"


def test_a_cold_shutdown_mid_op_leaves_the_update_pending_for_the_next_worker(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    worker = start_worker(["engine_faults"], pool="solo", concurrency=1, name="stopping")
    handle = Tally("shutdown")
    started, gate = tmp_path / "started", tmp_path / "gate"
    handle.run("gate", {"gate": str(gate), "started": str(started)})
    handle.run("add", {})
    wait_for(started.exists, 30, "the op to start")
    worker.kill(signal.SIGQUIT)  # cold shutdown: Celery raises WorkerTerminate in the op
    assert worker.proc is not None
    worker.proc.wait(30)
    client, keys = get_redis(), K.InstanceKeys.of(handle.instance_name)
    assert not client.exists(keys.lease), "the lease goes with the worker, not a period later"
    assert client.zcard(keys.failed) == 0, client.zrange(keys.failed, 0, -1)
    assert client.hlen(keys.inbox) == 2
    gate.touch()
    start_worker(["engine_faults"], pool="solo", concurrency=1, name="next")
    handle.flush_update(timeout=30)
    assert handle.read_state("count") == 2


# -- item 5: an op holding the GIL longer than the lease ---------------------------------


@pytest.mark.parametrize("pool", ["threads", "prefork"])
def test_an_op_holding_the_gil_past_the_lease_runs_once_and_commits(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    pool: str,
) -> None:
    env = {"MOTION_LEASE_SECONDS": "1"}
    start_worker(["engine_faults"], pool=pool, concurrency=1, name=f"gil-{pool}", env=env)
    handle = Effects(f"gil-{pool}")
    log = tmp_path / "effects"
    handle.run("hog", {"log": str(log), "n": 26})  # one re.match: ~2 s+, GIL held
    handle.run("hog", {"log": str(log), "n": 12})
    handle.flush_update(timeout=90)
    assert handle.read_state("seqs") == [1, 2]
    assert log.read_text().split() == ["1", "2"], "each op ran once: no effect repeated"
    stats = get_redis().hgetall(K.stats("Effects"))
    assert b"takeovers" not in stats


# -- item 6: maxmemory with noeviction ---------------------------------------------------


def test_at_maxmemory_workers_still_commit_and_enqueue_refusals_are_motion_errors(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = RedisServer(
        tmp_path / "full", "--maxmemory", "12mb", "--maxmemory-policy", "noeviction"
    ).start()
    worker = Worker(server.url, ["engine_faults"], tmp_path / "logs", pool="solo")
    try:
        monkeypatch.setenv("MOTION_REDIS_URL", server.url)
        reset_motion()
        worker.start()
        handle = Tally("full")
        gate = tmp_path / "gate"
        handle.run("gate", {"gate": str(gate)})  # the worker drains slower than we enqueue
        blob = "x" * 100_000
        accepted = 1
        with pytest.raises(RedisFullError, match="maxmemory") as refused:
            for _ in range(1000):
                handle.run("add", {"blob": blob})
                accepted += 1
        assert isinstance(refused.value, MemoryError) and "retry" in str(refused.value)
        assert accepted > 10
        gate.touch()  # the backlog drains at maxmemory: commits free the inbox
        handle.flush_update(timeout=60)
        assert handle.read_state("count") == accepted
        assert server.client().hlen(K.InstanceKeys.of(handle.instance_name).inbox) == 0
        handle.run("add", {"blob": blob}, flush_update=True)  # room again
        assert handle.read_state("count") == accepted + 1
    finally:
        worker.kill()
        server.stop()


# -- item 13: clock skew -----------------------------------------------------------------


def test_a_worker_whose_clock_runs_ahead_keeps_fresh_updates(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    env = {"MOTION_TEST_CLOCK_SKEW": "45"}
    start_worker(["skewed_clock", "engine_faults"], pool="solo", name="ahead", env=env)
    handle = Tally("ahead")
    for _ in range(3):
        handle.run("recent", {})  # SECONDS policy, 30 s: these are fresh
    handle.flush_update(timeout=30)
    assert handle.read_state("count") == 3


def test_a_sweeper_whose_clock_runs_behind_still_re_wakes(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    handle = Tally("behind")
    handle.run("add", {})
    client = get_redis()
    assert sum(client.llen(q) for q in wakeup.queues_of("Tally")) == 1
    client.delete(*wakeup.queues_of("Tally"))  # the wake-up is lost
    env = {"MOTION_TEST_CLOCK_SKEW": "-120"}
    start_worker(["skewed_clock", "engine_faults"], pool="solo", name="behind", env=env)
    handle.flush_update(timeout=30)
    assert handle.read_state("count") == 1


# -- item 14: a drain's memory is bounded by bytes ---------------------------------------


def test_a_drain_window_and_a_batch_call_are_bounded_by_bytes(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTION_BATCH_BYTES", str(3_000_000))
    reset_motion()
    handle = Batches("big")
    for _ in range(12):
        handle.run("bulk", {"blob": b"x" * 1_000_000})
    largest = 0
    real_run = scripts.run

    def measured(client, name, keys, args, fast=False):  # type: ignore[no-untyped-def]
        nonlocal largest
        reply = real_run(client, name, keys, args, fast)
        if name in ("begin", "window", "commit") and isinstance(reply, list):
            payloads = [x for x in reply if isinstance(x, bytes) and b"\x00" in x[:64]]
            largest = max(largest, sum(len(p) for p in payloads))
        return reply

    monkeypatch.setattr(scripts, "run", measured)
    engine.drain(Batches, "big")
    calls = handle.read_state("calls")
    assert handle.read_state("seqs") == list(range(1, 13)), "all applied, in order"
    assert sum(calls) == 12 and max(calls) <= 3, f"a batch call got too much: {calls}"
    assert 0 < largest <= 3_000_000 + 1_100_000, f"a window held {largest} bytes"
