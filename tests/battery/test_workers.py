"""Worker faults under sustained load: killed pool children and workers, slow ops, pauses, scaling.

Every scenario runs producers over at least 100 instances while it injects its
faults, then checks the invariant (see :mod:`tests.battery.harness`) and prints
its line. The recovery time is from the fault until every update enqueued
before it is applied (the worst over repeated faults).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

import pytest

from tests.battery.conftest import LEASE_SECONDS, Battery
from tests.battery.harness import (
    Stalls,
    advance,
    finish,
    running_pid,
    seqs_now,
    wait_applied,
)
from tests.support import Worker, wait_for

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def owner(workers: list[Worker], pid: int) -> Worker:
    """The worker whose process (or pool child) is ``pid``."""
    for worker in workers:
        if worker.proc is not None and (pid == worker.proc.pid or pid in worker.children()):
            return worker
    raise AssertionError(f"no running worker has process {pid}")


def _exits(worker: Worker, timeout: float) -> bool:
    """Whether the worker exits within ``timeout`` s (it is killed if not)."""
    assert worker.proc is not None
    try:
        worker.proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        worker.kill()
        return False


def test_pool_children_killed_repeatedly(battery: Battery) -> None:
    worker = battery.worker("pool", concurrency=2)
    load = battery.load()
    client, stalls = battery.client(), Stalls(battery.folder)
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    worst = 0.0
    for k in range(battery.size.faults):
        marker, _ = stalls.start(client, load.names[k], sleep=30)
        child = running_pid(marker)
        assert child in worker.children(), "the stall should run in a pool child"
        os.kill(child, signal.SIGKILL)  # mid-update: it holds the instance's lease
        killed = time.monotonic()
        targets = seqs_now(client, load.names)
        wait_applied(client, targets, 60, "updates enqueued before the kill")
        worst = max(worst, time.monotonic() - killed)
        advance(client, load.names, step)
    verdict = finish(
        client, f"pool child SIGKILL x{battery.size.faults}", load, extra_acked=stalls.acked
    )
    verdict.recovery = worst
    if verdict.takeovers < battery.size.faults:
        verdict.problems.append(f"expected a takeover per kill, saw {verdict.takeovers}")
    battery.report(verdict)


def test_whole_worker_killed_and_restarted(battery: Battery) -> None:
    workers = [battery.worker("a"), battery.worker("b")]
    load = battery.load()
    client, stalls = battery.client(), Stalls(battery.folder)
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    worst = 0.0
    rounds = max(battery.size.faults // 2, 1)
    for k in range(rounds):
        marker, _ = stalls.start(client, load.names[k], sleep=30)
        victim = owner(workers, running_pid(marker))
        victim.kill(signal.SIGKILL)  # main process and every pool child
        killed = time.monotonic()
        targets = seqs_now(client, load.names)
        workers.remove(victim)
        workers.append(battery.worker(f"r{k}"))  # restarted while the load goes on
        wait_applied(client, targets, 60, "updates enqueued before the kill")
        worst = max(worst, time.monotonic() - killed)
        advance(client, load.names, step)
    verdict = finish(
        client, f"whole worker SIGKILL+restart x{rounds}", load, extra_acked=stalls.acked
    )
    verdict.recovery = worst
    battery.report(verdict)


def test_update_longer_than_the_lease_keeps_its_lease(battery: Battery) -> None:
    workers = [battery.worker("a"), battery.worker("b")]
    load = battery.load()
    client, stalls = battery.client(), Stalls(battery.folder)
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    sleep = 2.5 * LEASE_SECONDS
    started = time.monotonic()
    runs = [stalls.start(client, load.names[k], sleep=sleep) for k in range(2)]
    for marker, _ in runs:
        running_pid(marker)
    targets = {load.names[k]: seq for k, (_, seq) in enumerate(runs)}
    wait_applied(client, targets, 60, "the long updates")
    took = time.monotonic() - started
    advance(client, load.names, step)
    verdict = finish(client, "update op 2.5x the lease", load, extra_acked=stalls.acked)
    verdict.notes.append(f"ops took {took:.1f}s with a {LEASE_SECONDS:.0f}s lease")
    if took < sleep:
        verdict.problems.append(f"the long updates took {took:.1f}s, not longer than the lease")
    if verdict.takeovers:
        verdict.problems.append(f"{verdict.takeovers} takeover(s): renewal did not keep the lease")
    for worker in workers:
        log = worker.log.read_text()
        if "lease lost" in log or "lost the lease" in log:
            verdict.problems.append(f"{worker.name} lost a lease (or says it did)")
    battery.report(verdict)


def test_paused_worker_late_commit_is_refused(battery: Battery) -> None:
    workers = [battery.worker("a"), battery.worker("b")]
    load = battery.load()
    client, stalls = battery.client(), Stalls(battery.folder)
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    name = load.names[0]
    marker, _ = stalls.start(client, name, sleep=1.5)
    victim = owner(workers, running_pid(marker))
    victim.kill(signal.SIGSTOP)  # frozen mid-update, holding the lease
    paused = time.monotonic()
    targets = seqs_now(client, load.names)
    wait_applied(client, targets, 60, "the other worker to take over")
    recovery = time.monotonic() - paused
    assert time.monotonic() - paused > LEASE_SECONDS
    victim.kill(signal.SIGCONT)
    # the task's result says so: motion.apply's {'skipped': 'lease lost', ...}, a
    # motion.ready task's {'instances': {'Comp__id': '<seqs> (lease lost)'}}
    wait_for(
        lambda: re.search(r"succeeded in [^\n]*lease lost\)?'", victim.log.read_text()),
        30,
        "the resumed worker's commit to be refused",
    )
    advance(client, load.names, step)
    verdict = finish(client, "worker paused past its lease", load, extra_acked=stalls.acked)
    verdict.recovery = recovery
    verdict.notes.append("late commit refused")
    if verdict.takeovers < 1:
        verdict.problems.append("no takeover counted for the paused worker's lease")
    battery.report(verdict)


def test_workers_scaled_up_and_down(battery: Battery) -> None:
    workers = [battery.worker("s0", concurrency=1)]
    load = battery.load()
    client = battery.client()
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    workers += [battery.worker(f"s{i}", concurrency=1) for i in range(1, 4)]
    advance(client, load.names, step)
    scaled = time.monotonic()
    targets = seqs_now(client, load.names)
    for worker in workers[1:]:  # warm shutdown: drains finish, prefetched wake-ups go back
        assert worker.proc is not None
        worker.proc.terminate()
    wait_applied(client, targets, 60, "updates enqueued before scaling down")
    recovery = time.monotonic() - scaled
    hung = [w.name for w in workers[1:] if not _exits(w, 20)]
    advance(client, load.names, step)
    verdict = finish(client, "workers scaled 1->4->1", load)
    verdict.recovery = recovery
    if hung:
        verdict.notes.append(f"{len(hung)} worker(s) still running 20s after SIGTERM")
    battery.report(verdict)
