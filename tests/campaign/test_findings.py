"""Defects the campaign found that no change owns yet, each pinned by a minimal test.

A worker stopped (SIGSTOP: a frozen VM, a container paused, a machine swapping)
while Redis restarts never consumes a wake-up again once it resumes: its Celery
consumer does not notice that its broker connection is gone (no "Connection to
broker lost" in its log; its main process keeps its broker sockets in CLOSE-WAIT,
never read again), while the worker's own sweeper thread reconnects and
re-sends wake-ups every sweep into queues nobody reads. With no other worker, the
instance's updates wait forever although a worker "runs". Found by the campaign
(a seed that paused both workers across a Redis crash); it holds with a graceful
restart as with a crash, with ``socket_timeout`` in ``broker_transport_options``,
and after 100 s. The nemesis kind ``pause_restart`` injects it; the other kinds
hold Redis restarts back while a worker is paused.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from tests.campaign.world import FAST
from tests.conftest import reset_motion
from tests.support import COMPONENTS, RedisServer, Worker, clear_motion_env

pytestmark = pytest.mark.integration


@pytest.mark.timeout(90)
@pytest.mark.xfail(
    strict=True,
    reason="a worker paused across a Redis restart never consumes again (no owner yet)",
)
def test_a_worker_paused_across_a_redis_restart_consumes_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if str(COMPONENTS) not in sys.path:
        sys.path.insert(0, str(COMPONENTS))
    from ledger import Ledger

    server = RedisServer(tmp_path / "redis").start()
    clear_motion_env(monkeypatch, server.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    reset_motion()
    worker = Worker(server.url, ["ledger"], tmp_path / "logs", env=FAST).start()
    try:
        handle = Ledger("paused")
        handle.run("add", {"item": "a"}, flush_update=True)
        worker.kill(signal.SIGSTOP)
        server.restart()
        worker.kill(signal.SIGCONT)
        handle.run("add", {"item": "b"})
        handle.flush_update(timeout=20)  # lease 2 s, sweep 1 s: ample
    finally:
        worker.kill(signal.SIGCONT)
        worker.kill()
        server.stop()
        reset_motion()
