"""The metrics exporter: backlog, lag and counters, scraped while real workers run."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from redis.backoff import NoBackoff
from redis.retry import Retry

from motion.floor import keys as K
from motion.floor import wakeup
from motion.floor.embedded import free_port
from motion.tools import metrics, producer
from motion.worker import sweeper
from tests.support import ROOT, motion_env, register_component, wait_for

pytestmark = pytest.mark.integration

EMPTY = {"count": 0, "seqs": []}
HIT = {"component": "Tally", "flow": "hit"}


@pytest.fixture(autouse=True)
def fresh_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    producer.reset()
    if "redis_url" in request.fixturenames:  # as if a worker with Tally's code had run
        register_component(request.getfixturevalue("redis_url"), "Tally")
    yield
    producer.reset()


def test_backlog_is_counted_and_scaled_from_a_bounded_sample(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    for name in ("a", "b", "c"):
        for _ in range(2):
            producer.enqueue("Tally", name, "hit", {}, initial_state={"count": 0})
    client.hset(K.stats("Tally"), mapping={"applied:hit": 4, "failed:boom": 1, "takeovers": 2})
    snap = metrics.collect(client)
    assert (snap.pending_instances, snap.pending_updates, snap.sampled_instances) == (3, 6, 3)
    assert snap.components["Tally"].flows == {"hit": {"applied": 4}, "boom": {"failed": 1}}
    assert snap.components["Tally"].takeovers == 2
    sampled = metrics.collect(client, sample=2)
    assert (sampled.sampled_instances, sampled.pending_updates) == (2, 6)  # 4 seen, x 3/2


def test_age_and_lag_of_a_stuck_instance_grow_through_sweeper_passes(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    producer.enqueue("Tally", "stuck", "hit", {}, initial_state={"count": 0})
    now_ms = int(time.time() * 1000)
    client.hset(K.InstanceKeys.of("Tally__stuck").meta, "applied_at", now_ms - 100_000)
    client.zadd(K.PENDING, {"Tally__stuck": now_ms - 50_000})  # pending for 50 s
    client.zadd(K.SWEEP, {"Tally__stuck": now_ms - 50_000})
    first = metrics.collect(client)
    assert 49 < first.update_lag_seconds < 60
    assert 49 < first.oldest_pending_seconds < 60
    sent: list[str] = []
    # its motion.ready message is lost (the ready list's count gone): the sweeper re-wakes
    client.delete(*[f"{K.READY}{queue}:n" for queue in wakeup.queues_of("Tally")])
    assert sweeper.sweep_once(client, lambda c, i, f, s: sent.append(i)) == 1
    assert sent == ["stuck"]  # re-woken; its schedule moved, its age did not
    again = metrics.collect(client)  # a fresh exporter: no memory needed
    assert again.oldest_pending_seconds >= first.oldest_pending_seconds
    assert again.update_lag_seconds >= first.update_lag_seconds


def test_redis_down_is_reported_not_raised() -> None:
    dead = redis.Redis(port=free_port(), socket_connect_timeout=1, retry=Retry(NoBackoff(), 0))
    families = {f.name: f for f in metrics.Collector(dead).collect()}
    assert families["motion_up"].samples[0].value == 0


class Exporter:
    """``python -m motion.tools.metrics`` as a subprocess on a free port."""

    def __init__(
        self, url: str, log: Path, command: tuple[str, ...] = ("motion.tools.metrics",)
    ) -> None:
        self.port = free_port()
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(self.port)],
            cwd=ROOT,
            env=motion_env(url),
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
        )
        wait_for(self.healthy, 20, "the metrics endpoint")

    def get(self, path: str) -> bytes:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as resp:
            return resp.read()  # type: ignore[no-any-return]

    def healthy(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"exporter exited: {self.log.read_text()}")
        try:
            return json.loads(self.get("/healthz"))["up"] == 1
        except OSError:
            return False

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = self.get("/metrics").decode()
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def test_motion_metrics_command_serves_the_same(redis_url: str, tmp_path: Path) -> None:
    producer.enqueue("Tally", "cli", "hit", {}, initial_state=EMPTY)
    exporter = Exporter(redis_url, tmp_path / "cli.log", ("motion.tools.cli", "metrics"))
    try:
        assert value(exporter.scrape(), "motion_pending_updates") == 1
    finally:
        exporter.stop()


def value(scrape: dict, name: str, **labels: str) -> float:
    return scrape.get((name, tuple(sorted(labels.items()))), 0.0)


def test_scraped_during_a_run_with_real_workers(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    exporter = Exporter(redis_url, tmp_path / "exporter.log")
    try:
        for i in range(5):
            producer.enqueue("Tally", f"i{i % 2}", "hit", {}, initial_state=EMPTY)
        producer.enqueue("Tally", "i0", "boom", {})
        producer.enqueue("Tally", "i1", "boom", {})
        before = exporter.scrape()
        assert value(before, "motion_up") == 1
        assert value(before, "motion_pending_instances") == 2
        assert value(before, "motion_pending_updates") == 7
        assert json.loads(exporter.get("/backlog"))["pending_updates"] == 7

        start_worker(["ops_tally"], pool="threads", concurrency=2)

        def drained() -> dict | None:
            # a scrape reads the pending index before the instances' counters, so one
            # taken during the last commit can count an instance whose updates are done
            s = exporter.scrape()
            done = value(s, "motion_updates_total", outcome="applied", **HIT) == 5
            idle = value(s, "motion_pending_updates") == 0
            return s if done and idle and value(s, "motion_pending_instances") == 0 else None

        after = wait_for(drained, 20, "the scrape to show the run drained")
        boom = {"component": "Tally", "flow": "boom"}
        assert value(after, "motion_updates_total", outcome="failed", **boom) == 2
        assert value(after, "motion_op_calls_total", **HIT) == 5
        assert value(after, "motion_pending_instances") == 0

        # a slow update: the lag grows while it runs, and falls back once it commits
        producer.enqueue("Tally", "i0", "nap", {"sleep": 2.5})
        producer.enqueue("Tally", "i0", "hit", {})
        lagging = wait_for(
            lambda: (s := exporter.scrape()) and value(s, "motion_update_lag_seconds") >= 1.0 and s,
            10,
            "the lag of a slow update to show",
        )
        assert value(lagging, "motion_pending_updates") >= 1
        wait_for(
            lambda: value(exporter.scrape(), "motion_pending_updates") == 0, 20, "the nap to end"
        )
        assert value(exporter.scrape(), "motion_update_lag_seconds") == 0
    finally:
        exporter.stop()
