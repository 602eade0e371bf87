"""A hot instance's drain lingers for its next updates (motion/worker/lease.py: linger): they
are handed to it directly, not each through a Celery wake-up, and every one still
shows in the seqs of the task that applied it.

Real redis-server, a real Celery worker subprocess.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ops_tally import Tally  # noqa: E402
from pacing import Pace  # noqa: E402

N = 150


def _task_results(log: Path) -> list[str]:
    return re.findall(r"Task \S+\[[^\]]+\] succeeded in [^\n]*", log.read_text())


def _covered(results: list[str]) -> set[int]:
    seqs: set[int] = set()
    for line in results:
        # motion.apply's result has 'seqs': '4-9'; motion.ready's maps each instance to
        # its seqs, 'Tally__hot': '4-9' (or '1-3; 4-9' for an instance it took twice)
        for found in re.finditer(r"'(?:seqs|Tally__[\w-]+)': '([^']*)'", line):
            for part in found.group(1).split("; "):
                span = re.match(r"(\d+)(?:-(\d+))?", part)
                if span:
                    first = int(span.group(1))
                    seqs.update(range(first, int(span.group(2) or first) + 1))
    return seqs


def _run_paced(handle: Tally, rate: float) -> None:  # type: ignore[valid-type]
    pace = Pace(rate)
    for _ in range(N):
        handle.run("hit")
        pace.next()


def test_a_hot_instance_takes_its_updates_without_a_wake_up_each(start_worker) -> None:  # type: ignore[no-untyped-def]
    worker = start_worker(["ops_tally"], pool="prefork", concurrency=1, name="hot")
    handle = Tally("hot")
    handle.read_state("count")
    _run_paced(handle, 100)  # 10 ms apart: within MOTION_LINGER_MS (20)
    handle.flush_update(timeout=30)
    assert handle.read_state("seqs") == list(range(1, N + 1))
    results = wait_for(
        lambda: (r := _task_results(worker.log)) and _covered(r) >= set(range(1, N + 1)) and r,
        20,
        "the tasks' results to name every seq",
    )
    # a wake-up per update (each drain finding the inbox empty) made ~N tasks
    assert len(results) <= N // 5, f"{len(results)} tasks for {N} updates: no lingering"


def test_with_lingering_off_each_update_is_its_own_task(start_worker) -> None:  # type: ignore[no-untyped-def]
    env = {"MOTION_LINGER_MS": "0"}
    worker = start_worker(["ops_tally"], pool="prefork", concurrency=1, name="cold", env=env)
    handle = Tally("cold")
    handle.read_state("count")
    _run_paced(handle, 50)
    handle.flush_update(timeout=30)
    assert handle.read_state("seqs") == list(range(1, N + 1))
    results = wait_for(
        lambda: (r := _task_results(worker.log)) and _covered(r) >= set(range(1, N + 1)) and r,
        20,
        "the tasks' results to name every seq",
    )
    assert len(results) > N // 5


def test_a_worker_killed_while_lingering_loses_nothing(start_worker) -> None:  # type: ignore[no-untyped-def]
    env = {"MOTION_LINGER_MS": "2000"}  # lingers long: the kill lands while it waits
    first = start_worker(["ops_tally"], pool="prefork", concurrency=1, name="lk", env=env)
    handle = Tally("linger-kill")
    handle.read_state("count")
    handle.run("hit")
    handle.run("hit")  # close together: the instance is hot, the drain lingers
    wait_for(lambda: handle.read_state("count") == 2, 20, "both updates applied")
    first.kill()
    handle.run("hit")  # the lease of the dead lingerer is still there: no wake-up
    start_worker(["ops_tally"], pool="prefork", concurrency=1, name="lk2")
    handle.flush_update(timeout=60)
    assert handle.read_state("seqs") == [1, 2, 3]


def _entries(times_ms: list[int]) -> list[bytes | None]:
    return [b"hit\x02%d\x00payload" % ms for ms in times_ms]


def test_a_burst_of_a_few_producers_is_not_hot() -> None:
    # four producers cycling through many instances: each instance gets its updates in
    # bursts of four, seconds apart; lingering after each burst would hold a pool slot
    # for nothing (W11 timed out that way)
    from motion.worker import lease

    name = "Tally__burst"
    for cycle in range(5):
        start = 1_000_000 + cycle * 3_000
        lease.observe(name, _entries([start, start + 1, start + 2, start + 3]))
        assert not lease.hot(name), f"hot after burst {cycle}"


def test_a_steady_stream_is_hot() -> None:
    from motion.worker import lease

    name = "Tally__steady"
    for i in range(lease.HOT_RUN):
        lease.observe(name, _entries([2_000_000 + 5 * i]))  # 200 updates/s, one per window
    assert lease.hot(name)
