"""Redis faults: restarted (or killed) mid-load with AOF on, and unreachable at enqueue.

With AOF on, a graceful restart loses nothing committed; with ``appendfsync
always`` even a killed Redis loses nothing it acknowledged. Callers see
:class:`~motion.errors.ConnectionFailedError` while Redis is away and carry on
by themselves afterwards, and so do workers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from motion import ConnectionFailedError
from motion.floor import keys as K
from tests.battery.conftest import Battery
from tests.battery.harness import (
    advance,
    applied_now,
    check,
    finish,
    seqs_now,
    wait_applied,
)
from tests.support import RedisServer

pytestmark = [pytest.mark.battery, pytest.mark.integration, pytest.mark.timeout(300)]


def graceful(server: RedisServer) -> None:
    """SIGTERM (Redis flushes the AOF), then start again on the same port and data."""
    server.restart()


def crash(server: RedisServer) -> None:
    """SIGKILL, then start again on the same port and data."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(10)
    server.proc = None
    server.start()


@pytest.mark.parametrize(
    ("how", "extra"),
    [(graceful, ()), (crash, ("--appendfsync", "always"))],
    ids=["restart", "crash"],
)
def test_redis_restarted_mid_load(
    battery: Battery, how: Callable[[RedisServer], None], extra: tuple[str, ...]
) -> None:
    if extra:  # the same server, restarted with the stricter fsync policy
        battery.server.extra += list(extra)
        battery.server.restart()
    battery.worker("a")
    battery.worker("b")
    load = battery.load()
    client = battery.client()
    step = battery.size.producers * int(battery.size.rate * battery.size.seconds / 2)
    advance(client, load.names, step)
    worst, rounds = 0.0, max(battery.size.faults // 2, 1)
    for _ in range(rounds):
        committed = applied_now(client, load.names)
        how(battery.server)
        back = time.monotonic()
        after = applied_now(client, load.names)
        lost = {n: (committed[n], after[n]) for n in committed if after[n] < committed[n]}
        assert not lost, f"committed updates lost in the restart: {list(lost.items())[:5]}"
        targets = seqs_now(client, load.names)
        advance(client, load.names, step // 2)  # callers reconnected by themselves
        # workers reconnect too, unless kombu gives up on the lost connection: then the
        # worker exits and its supervisor starts it again
        wait_applied(client, targets, 90, "updates enqueued before the restart", battery.supervise)
        worst = max(worst, time.monotonic() - back)
    verdict = finish(
        client,
        f"redis {'restart' if how is graceful else 'SIGKILL (appendfsync always)'} x{rounds}",
        load,
        allowed_errors=("ConnectionFailedError",),
    )
    verdict.recovery = worst
    if battery.restarts:
        verdict.notes.append(
            f"{len(battery.restarts)} worker(s) exited and were restarted: {battery.restarts[0]}"
        )
    messages = load.summary["messages"]
    if any("127.0.0.1" not in m for m in messages):
        verdict.problems.append(f"a caller error does not name the Redis URL: {messages}")
    battery.report(verdict)


def test_redis_unreachable_at_enqueue_leaves_nothing_half_done(battery: Battery) -> None:
    import battery_ledger
    from ledger import Ledger

    battery.worker("a", concurrency=1)
    handle = Ledger("gate")
    handle.run("gate", {"item": "g:0"}, flush_update=True)
    keys = K.InstanceKeys.of(handle.instance_name)
    client = battery.client()
    before = (client.hgetall(keys.meta), client.hgetall(keys.inbox), client.zcard(K.PENDING))
    battery_ledger.GATE_HOOKS.append(battery.server.stop)  # away between serve and enqueue
    started = time.monotonic()
    with pytest.raises(ConnectionFailedError) as raised:
        handle.run("gate", {"item": "g:1"})
    took = time.monotonic() - started
    message = str(raised.value)
    assert "enqueueing 'gate'" in message and f"127.0.0.1:{battery.server.port}" in message
    assert "MOTION_REDIS_URL" in message, "the error should say what to check"
    assert took < 10, f"the caller waited {took:.1f}s for an unreachable Redis"
    battery.server.start()
    after = (client.hgetall(keys.meta), client.hgetall(keys.inbox), client.zcard(K.PENDING))
    assert after == before, "a failed enqueue left something behind"
    handle.run("gate", {"item": "g:2"})  # the caller's pool reconnects by itself
    handle.flush_update(timeout=60)  # and so does the worker
    name = handle.instance_name
    verdict = check(client, "redis unreachable at enqueue", [name], {name: ["g:0", "g:2"]})
    verdict.notes.append("ConnectionFailedError naming the URL; nothing half-enqueued")
    battery.report(verdict)
