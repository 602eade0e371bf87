"""``async def`` update ops run concurrently on the worker's event loop
(motion/floor/awaits.py), not one per pool thread; a worker killed or stopped while
they await loses nothing.

Real redis-server, real Celery worker subprocesses.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path

import pytest

from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from async_waits import Waits  # noqa: E402


def _all_applied(handles: list, n: int = 1) -> bool:  # type: ignore[type-arg]
    return all(h.read_state("n") >= n for h in handles)


def test_async_ops_await_concurrently_beyond_the_pool_size(start_worker) -> None:  # type: ignore[no-untyped-def]
    # 40 instances, each op awaiting 1 s, on a worker of 2 pool threads: one op per
    # thread would take 20 s; on one event loop they overlap
    start_worker(["async_waits"], pool="threads", concurrency=2, name="loop2")
    handles = [Waits(f"conc-{i}") for i in range(40)]
    for h in handles:
        h.read_state("n")  # created before the clock starts
    start = time.monotonic()
    for h in handles:
        h.run("ask", {"s": 1.0})
    wait_for(lambda: _all_applied(handles), 30, "40 async ops to commit")
    elapsed = time.monotonic() - start
    assert elapsed < 6.0, f"40 ops of 1 s on 2 threads took {elapsed:.1f} s: not concurrent"
    for h in handles:
        assert h.read_state("seqs") == [1]


def test_debounced_async_ops_are_released_and_awaited_concurrently(start_worker) -> None:  # type: ignore[no-untyped-def]
    # flow control and the event loop together: 20 instances, 3 debounced updates each,
    # each op awaiting 0.5 s, on 2 pool threads: one op per thread would take 15 s
    start_worker(["async_waits"], pool="threads", concurrency=2, name="loop-settle")
    handles = [Waits(f"settle-{i}") for i in range(20)]
    for h in handles:
        h.read_state("n")  # created before the clock starts
    start = time.monotonic()
    for h in handles:
        for _ in range(3):
            h.run("settle", {"s": 0.5})
    wait_for(lambda: _all_applied(handles, 3), 40, "60 debounced async ops to commit")
    elapsed = time.monotonic() - start
    assert elapsed < 9.0, f"60 ops of 0.5 s on 2 threads took {elapsed:.1f} s: not concurrent"
    for h in handles:
        assert h.read_state("seqs") == [1, 2, 3]


def test_updates_arriving_while_an_op_awaits_are_applied_in_order(start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(["async_waits"], pool="threads", concurrency=2, name="loop-order")
    handle = Waits("order")
    for _ in range(5):
        handle.run("ask", {"s": 0.2})
    handle.flush_update(timeout=30)
    assert handle.read_state("seqs") == [1, 2, 3, 4, 5]


def test_a_failing_attempt_is_retried_on_the_loop(start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start_worker(["async_waits"], pool="threads", concurrency=1, name="loop-retry")
    handle = Waits("retry")
    handle.run("flaky", {"fail": str(tmp_path / "failed-once")})
    handle.flush_update(timeout=30)
    assert handle.read_state("seqs") == [1]
    assert (tmp_path / "failed-once").exists()


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_worker_gone_while_ops_await_loses_no_update(start_worker, how: str) -> None:  # type: ignore[no-untyped-def]
    # the ops await 4 s; the first worker goes after they started (SIGKILL: the leases
    # expire; warm stop with a 3 s lease: their drains are closed, leases released);
    # a second worker applies every update exactly once
    first = start_worker(["async_waits"], pool="threads", concurrency=2, name=f"gone-{how}")
    handles = [Waits(f"gone-{how}-{i}") for i in range(10)]
    for h in handles:
        h.run("ask", {"s": 4.0})
    wait_for(lambda: all(_held(h) for h in handles), 20, "every instance's drain to hold its lease")
    if how == "kill":
        first.kill(signal.SIGKILL)
    else:
        first.stop()
    start_worker(["async_waits"], pool="threads", concurrency=2, name=f"after-{how}")
    wait_for(lambda: _all_applied(handles), 60, "the second worker to apply every update")
    for h in handles:
        h.flush_update(timeout=30)
        assert h.read_state("seqs") == [1], f"{h.instance_id}: {h.read_state('seqs')}"
        assert h.read_state("n") == 1


def _held(handle) -> bool:  # type: ignore[no-untyped-def]
    from motion.floor.connection import get_redis
    from motion.floor.keys import InstanceKeys, instance_name

    keys = InstanceKeys.of(instance_name("Waits", handle.instance_id))
    return bool(get_redis().exists(keys.lease))
