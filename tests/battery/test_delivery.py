"""Celery delivery faults under sustained load: wake-ups delivered twice, wake-ups lost.

A wake-up only names an instance; the inbox, the lease and the commit's seq check
decide what is applied. So a duplicated wake-up must change nothing, and a lost
one must cost at most a sweep period or two.
"""

from __future__ import annotations

import signal
import time

import pytest

from motion.floor import celery_app
from motion.floor import keys as K
from tests.battery.conftest import Battery
from tests.battery.harness import advance, finish, seqs_now, wait_applied

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]

#: the wake-up queues of the battery's components
QUEUES = [f"motion.Ledger.{i}" for i in range(4)]


def test_same_task_delivered_twice(battery: Battery) -> None:
    workers = [battery.worker("a"), battery.worker("b")]
    load = battery.load()
    client = battery.client()
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    sent = 0
    for _ in range(battery.size.faults):
        seqs = seqs_now(client, load.names)
        for name, seq in seqs.items():
            component, instance_id = K.split_instance_name(name)
            for _ in range(2):  # the same motion.apply message, twice
                celery_app.send_wakeup(component, instance_id, "add", seq)
                sent += 1
        advance(client, load.names, step // 2)
    verdict = finish(client, "motion.apply delivered twice", load)
    verdict.notes.append(f"{sent} extra wake-ups")
    if verdict.takeovers or any("lost the lease" in w.log.read_text() for w in workers):
        verdict.problems.append("a lease was lost (or reported lost) with no fault injected")
    battery.report(verdict)


def test_lost_tasks_are_recovered_by_the_sweeper(battery: Battery) -> None:
    worker = battery.worker("a")
    load = battery.load()
    client = battery.client()
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    assert worker.proc is not None
    purged, worst = 0, 0.0
    for _ in range(battery.size.faults):
        # Freeze the consumer so wake-ups pile up, then lose them all: the queued
        # messages and the ready lists' counts of motion.ready messages out (the
        # broker's data lost); the instances on the ready lists wait for a wake-up
        # that is not coming
        worker.proc.send_signal(signal.SIGSTOP)
        advance(client, load.names, step // 2)
        pipe = client.pipeline(transaction=True)
        for queue in QUEUES:
            pipe.llen(queue)
            pipe.llen(K.READY + queue)
        pipe.delete(*QUEUES, *[f"{K.READY}{queue}:n" for queue in QUEUES])
        purged += sum(pipe.execute()[: 2 * len(QUEUES)])
        lost_at = time.monotonic()
        targets = seqs_now(client, load.names)
        worker.proc.send_signal(signal.SIGCONT)
        wait_applied(client, targets, 60, "updates whose wake-ups were purged")
        worst = max(worst, time.monotonic() - lost_at)
        advance(client, load.names, step // 2)
    verdict = finish(client, "wake-up queues purged", load)
    verdict.recovery = worst
    verdict.notes.append(f"{purged} wake-ups purged")
    if not purged:
        verdict.problems.append("no wake-up was in the queues when they were purged")
    battery.report(verdict)
