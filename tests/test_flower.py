"""Flower watches a real system; the Procfile brings every process up and down with honcho."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from motion.floor.embedded import free_port
from motion.tools import producer
from tests.support import ROOT, RedisServer, Worker, motion_env, wait_for

pytestmark = pytest.mark.integration

PASSWORD = "flower-must-not-show-this"
EMPTY = {"count": 0, "seqs": []}
BIN = str(Path(sys.executable).parent)


@pytest.fixture
def secured_redis(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """A redis-server of its own that requires a password; producers in this process use it."""
    server = RedisServer(tmp_path / "redis", password=PASSWORD).start()
    monkeypatch.setenv("MOTION_REDIS_URL", server.url)
    from tests.conftest import reset_motion

    reset_motion()
    producer.reset()
    yield server
    producer.reset()
    reset_motion()
    server.stop()


def get(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        return resp.read().decode()  # type: ignore[no-any-return]


def answers(port: int, path: str) -> str | None:
    try:
        return get(port, path)
    except OSError:
        return None


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True)
    children = {int(p) for p in out.stdout.split()}
    return children.union(*(descendants(c) for c in children)) if children else set()


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_flower_shows_workers_and_update_tasks_without_secrets(
    secured_redis: RedisServer, tmp_path: Path
) -> None:
    worker = Worker(secured_redis.url, ["ops_tally"], tmp_path, pool="threads", name="fl")
    with flower_on(secured_redis.url, tmp_path) as port:
        try:
            worker.start()
            wait_for(
                lambda: worker.name in (answers(port, "/api/workers?refresh=1") or ""), 30, "flower"
            )
            for i in range(3):
                producer.enqueue("Tally", "fl", "hit", {"n": i}, initial_state=EMPTY)

            def update_tasks() -> list[dict[str, Any]]:
                # the wake-up of update #1: a motion.ready task of one of Tally's ready
                # lists, whose result names the instance with the seqs it applied
                tasks = json.loads(answers(port, "/api/tasks") or "{}").values()
                return [
                    t
                    for t in tasks
                    if t["name"] == "Tally.updates"
                    and t["args"].startswith("['Tally', 'motion:ready:motion.Tally.")
                    and t["state"] == "SUCCESS"
                    and "'Tally__fl': '" in (t.get("result") or "")
                ]

            tasks = wait_for(update_tasks, 20, "the update task in flower")
            assert tasks[0]["worker"] == worker.name
            client = redis.Redis.from_url(secured_redis.url)
            wait_for(
                lambda: client.hget("motion:{Tally__fl}:meta", "applied") == b"3", 20, "3 applied"
            )

            pages = [
                "/api/workers?refresh=1",
                "/api/tasks",
                "/broker",
                "/workers",
                f"/worker/{worker.name}",
                "/tasks",
                f"/task/{tasks[0]['uuid']}",
                "/metrics",
            ]
            for page in pages:
                assert PASSWORD not in get(port, page), f"{page} shows the Redis password"
            assert "redis://:**@127.0.0.1" in get(port, "/broker")
        finally:
            worker.stop()


def test_a_drain_that_recorded_failures_raises_after_committing(redis_url: str) -> None:
    """The task raises (Flower: FAILURE) only once everything is committed and recorded;
    a clean drain's result names the flows it applied, internal ones in plain words."""
    from motion.errors import DrainFailedError
    from motion.worker.engine import apply_task
    from tests.components.ops_tally import Tally  # noqa: F401  (the code the drain runs)
    from tests.support import register_component

    register_component(redis_url, "Tally")
    producer.enqueue("Tally", "d", "hit", {"n": 2}, initial_state=EMPTY)
    producer.enqueue("Tally", "d", "boom", {})
    with pytest.raises(DrainFailedError) as raised:
        apply_task("Tally", "d", "hit", 1)
    assert str(raised.value).startswith("Tally__d: 1 update(s) failed and were recorded"), raised
    assert "#2 (flow boom, op boom) RuntimeError: boom on purpose at ops_tally.py:" in str(
        raised.value
    )
    client = redis.Redis.from_url(redis_url)
    assert client.hget("motion:{Tally__d}:meta", "applied") == b"2"
    producer.enqueue("Tally", "d", "hit", {})
    assert apply_task("Tally", "d", "hit", 3) == {
        "instance": "Tally__d",
        "applied": 1,
        "failed": 0,
        "discarded": 0,
        "seqs": "3",
        "flows": {"hit": 1},
    }


@contextlib.contextmanager
def flower_on(url: str, tmp_path: Path) -> Iterator[int]:
    """Flower started in the checkout (so it reads flowerconfig.py); yields its port."""
    port = free_port()
    env = motion_env(url, FLOWER_UNAUTHENTICATED_API="1", PATH=BIN + ":/usr/bin:/bin")
    log = (tmp_path / "flower.log").open("w")
    flower = subprocess.Popen(
        ["celery", "-A", "workers", "flower", "--address=127.0.0.1", f"--port={port}"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield port
    finally:
        flower.terminate()
        flower.wait(10)
        log.close()


def test_flower_shows_a_drain_that_recorded_a_failure_as_failed(
    secured_redis: RedisServer, tmp_path: Path
) -> None:
    worker = Worker(secured_redis.url, ["ops_tally"], tmp_path, pool="threads", name="ff")
    with flower_on(secured_redis.url, tmp_path) as port:
        try:
            worker.start()
            wait_for(
                lambda: worker.name in (answers(port, "/api/workers?refresh=1") or ""), 30, "flower"
            )
            producer.enqueue("Tally", "ff", "boom", {}, initial_state=EMPTY)
            producer.enqueue("Tally", "ff", "hit", {"n": 1})

            def tasks() -> list[dict[str, Any]]:
                found = json.loads(answers(port, "/api/tasks") or "{}").values()
                return [t for t in found if t["state"] in ("SUCCESS", "FAILURE")]

            (task,) = wait_for(tasks, 30, "the drain in flower")
            assert task["state"] == "FAILURE", task
            assert task["name"] == "Tally.updates", task  # no flow: it applied both
            # component, ready list (the result names the instance)
            assert task["args"].startswith("['Tally', 'motion:ready:motion.Tally."), task
            # the error names the failed update, its exception and where it was raised
            error = "#1 (flow boom, op boom) RuntimeError: boom on purpose at ops_tally.py:"
            assert "Tally__ff: 1 update(s) failed" in task["exception"], task["exception"]
            assert error in task["exception"], task["exception"]
            assert "ops_tally.py" in task["traceback"], task["traceback"]
            client = redis.Redis.from_url(secured_redis.url)
            meta = client.hgetall("motion:{Tally__ff}:meta")
            assert meta[b"applied"] == b"2", meta  # the failure is recorded, the hit applied
            # acknowledged, not re-delivered: nothing waits in or out of the queues
            wait_for(lambda: client.hlen("unacked") == 0, 20, "the wake-up to be acknowledged")
            assert len(tasks()) == 1
            log = worker.log.read_text()
            assert "op boom failed: RuntimeError: boom on purpose" in log, log
            # the task list shows the arguments (flowerconfig.py) next to name and state
            assert 'data-column="args"' in get(port, "/tasks")
        finally:
            worker.stop()


def test_procfile_brings_up_worker_beat_flower_and_metrics(
    secured_redis: RedisServer, tmp_path: Path
) -> None:
    flower_port, metrics_port = free_port(), free_port()
    env = motion_env(
        secured_redis.url,
        PATH=BIN + ":/usr/bin:/bin",
        MOTION_MODULES="ops_tally",
        WORKER_CONCURRENCY="2",
        FLOWER_PORT=str(flower_port),
        METRICS_PORT=str(metrics_port),
        MOTION_BEAT_SCHEDULE=str(tmp_path / "beat-schedule"),
        MOTION_SWEEP_SECONDS="1",
        FLOWER_UNAUTHENTICATED_API="1",
    )
    log_path = tmp_path / "honcho.log"
    honcho = subprocess.Popen(
        ["honcho", "-f", str(ROOT / "Procfile"), "-d", str(ROOT), "start"],
        env=env,
        stdout=log_path.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a signal to the test run does not reach it twice
    )
    try:

        def up() -> bool:
            if honcho.poll() is not None:
                raise AssertionError(f"honcho exited:\n{log_path.read_text()[-3000:]}")
            text = log_path.read_text()
            return all(
                marker in text
                for marker in (" ready.", "beat: Starting", "Visit me at", "motion metrics on")
            )

        wait_for(up, 45, "worker, beat, flower and metrics to start", interval=0.1)
        wait_for(
            lambda: "worker-" in (answers(flower_port, "/api/workers?refresh=1") or ""),
            20,
            "flower to list the worker",
        )
        assert json.loads(get(metrics_port, "/healthz"))["up"] == 1
        producer.enqueue("Tally", "pf", "hit", {}, initial_state=EMPTY)
        client = redis.Redis.from_url(secured_redis.url)
        wait_for(
            lambda: client.hget("motion:{Tally__pf}:meta", "applied") == b"1", 20, "the update"
        )
        processes = descendants(honcho.pid)
        assert len(processes) >= 4
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(honcho.pid, signal.SIGTERM)
        try:
            honcho.wait(30)
        except subprocess.TimeoutExpired:
            for pid in [honcho.pid, *descendants(honcho.pid)]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            raise
    wait_for(lambda: not any(alive(p) for p in processes), 20, "every process to exit")
