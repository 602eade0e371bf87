"""The fault battery on RabbitMQ as the broker: worker kills and broker restarts under load.

State stays on the scenario's redis-server; the wake-ups go through the session's
rabbitmq-server (:mod:`tests.brokers`), for the callers, the producers and the
workers alike. The worker-kill scenarios are the Redis-broker ones of
:mod:`tests.battery.test_workers`, run as they are; the broker restart is this
module's own: the node is stopped (or its VM SIGKILLed) and started again on the
same ports and database while the load runs. Each prints its line, tagged ``amqp``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from tests.battery import test_workers as worker_faults
from tests.battery.conftest import Battery
from tests.battery.harness import advance, applied_now, finish, seqs_now, wait_applied
from tests.brokers import RabbitServer, clean_broker
from tests.conftest import reset_motion

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(400)]


@pytest.fixture
def amqp_battery(
    battery: Battery, rabbit_server: RabbitServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Battery]:
    """The scenario's world with the session's RabbitMQ as its broker."""
    clean_broker(rabbit_server, ["Ledger"])
    battery.broker_env = {"MOTION_BROKER_URL": rabbit_server.url}
    monkeypatch.setenv("MOTION_BROKER_URL", rabbit_server.url)
    reset_motion()
    yield battery


def test_pool_children_killed_repeatedly_on_amqp(amqp_battery: Battery) -> None:
    worker_faults.test_pool_children_killed_repeatedly(amqp_battery)


def test_whole_worker_killed_and_restarted_on_amqp(amqp_battery: Battery) -> None:
    worker_faults.test_whole_worker_killed_and_restarted(amqp_battery)


@pytest.mark.parametrize(
    "how", [RabbitServer.restart, RabbitServer.crash], ids=["restart", "crash"]
)
def test_broker_restarted_mid_load(
    amqp_battery: Battery, rabbit_server: RabbitServer, how: Callable[[RabbitServer], None]
) -> None:
    battery = amqp_battery
    battery.worker("a")
    battery.worker("b")
    load = battery.load()
    client = battery.client()
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    worst, rounds, away = 0.0, max(battery.size.faults // 2, 1), 0.0
    for _ in range(rounds):
        committed = applied_now(client, load.names)
        down = time.monotonic()
        how(rabbit_server)
        if how is RabbitServer.crash:
            rabbit_server.start()
        back = time.monotonic()
        away = max(away, back - down)
        after = applied_now(client, load.names)
        assert all(after[n] >= committed[n] for n in committed), "state went back"
        targets = seqs_now(client, load.names)
        advance(client, load.names, step // 2)  # callers carry on by themselves
        # workers reconnect to the broker; one that exits is restarted by its supervisor
        wait_applied(client, targets, 120, "updates enqueued before the restart", battery.supervise)
        worst = max(worst, time.monotonic() - back)
    kind = "restart" if how is RabbitServer.restart else "SIGKILL+start"
    verdict = finish(client, f"rabbitmq {kind} x{rounds}", load)
    verdict.recovery = worst
    verdict.notes.append(f"broker away up to {away:.1f}s")
    if battery.restarts:
        verdict.notes.append(
            f"{len(battery.restarts)} worker(s) exited and were restarted: {battery.restarts[0]}"
        )
    battery.report(verdict)
