"""One wake-up starts the drains of many ready instances (motion/worker/ready.py): a
burst over many idle instances costs far fewer Celery messages than instances, a
worker killed with instances it took loses nothing, and the sweeper leaves alone an
instance whose wake-up is still coming.

Real redis-server, real Celery worker subprocesses (killed with SIGKILL where a test
says so).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest

from motion.floor import keys as K
from motion.floor import scripts, wakeup
from motion.floor.connection import get_redis
from motion.worker import sweeper
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402

N = 40


def _received(log: Path) -> list[str]:
    """The Celery messages a worker received (one log line each)."""
    return re.findall(r"Task \S+\[[^\]]+\] received", log.read_text())


def _results(log: Path) -> str:
    return "\n".join(re.findall(r"Task \S+\[[^\]]+\] succeeded in [^\n]*", log.read_text()))


def _burst(prefix: str, per: int = 1, flow: str = "add", **props: Any) -> list[Any]:
    """``per`` updates to each of N fresh instances, with no worker running."""
    handles = [Ledger(f"{prefix}{i}") for i in range(N)]
    for k in range(per):
        for i, handle in enumerate(handles):
            handle.run(flow, {"item": f"p{i}:{k}", **props})
    return handles


def _all_applied(handles: list[Any], per: int) -> bool:
    return all(len(h.read_state("seqs")) >= per for h in handles)


def test_a_burst_over_many_instances_needs_fewer_messages_than_instances(
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    handles = _burst("burst", per=2)
    worker = start_worker(["ledger"], pool="threads", concurrency=16, name="burst")
    wait_for(lambda: _all_applied(handles, 2), 60, "every update to be applied")
    for handle in handles:
        assert handle.read_state("seqs") == [1, 2]
    received = _received(worker.log)
    # one message per instance before (each idle instance got its own motion.apply)
    # now: one per ready list (MOTION_QUEUES of them), and a few siblings at most
    assert len(received) <= N // 2, f"{len(received)} Celery messages for {N} instances"
    # every update still shows in the result of the task that applied it
    results = wait_for(
        lambda: (
            all(h.instance_name in _results(worker.log) for h in handles) and _results(worker.log)
        ),
        20,
        "the tasks' results to name every instance",
    )
    for handle in handles:
        assert re.search(rf"'{handle.instance_name}': '1-2'", results)


def test_a_worker_killed_holding_ready_instances_loses_nothing(
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    marker = tmp_path / "running"
    handles = _burst("killed", per=3, flow="slow", sleep=30, marker=str(marker))
    doomed = start_worker(["ledger"], pool="threads", concurrency=8, name="doomed")
    wait_for(marker.exists, 30, "the first worker to be applying updates")
    doomed.kill()  # SIGKILL: leases held, instances taken off the ready list
    rescuer = start_worker(
        ["ledger"], pool="threads", concurrency=16, name="rescuer", env={"LEDGER_SLOW_CAP": "0"}
    )
    wait_for(lambda: _all_applied(handles, 3), 90, "every update to be applied after the kill")
    for i, handle in enumerate(handles):
        assert handle.read_state("seqs") == [1, 2, 3], handle.instance_name
        assert handle.read_state("items") == [f"p{i}:0", f"p{i}:1", f"p{i}:2"]
    assert rescuer.proc is not None and rescuer.proc.poll() is None


def test_instances_taken_by_a_worker_that_died_before_draining_are_re_woken(
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    handles = _burst("taken")
    client = get_redis()
    taken = 0
    for queue in wakeup.queues_of("Ledger"):
        # a worker takes the queue's message and every instance off its list, then dies
        ready = K.READY + queue
        assert client.llen(queue) == 1
        client.delete(queue)
        reply = scripts.run(client, "ready", [ready, ready + ":n", queue], [N, 8, "Ledger", 3000])
        assert reply[0] == 0 and not client.exists(ready + ":n")
        taken += len(reply) - 1
    assert taken == N
    start_worker(["ledger"], pool="threads", concurrency=8, name="late")
    wait_for(lambda: _all_applied(handles, 1), 60, "the sweeper to re-wake every instance")
    for handle in handles:
        assert handle.read_state("seqs") == [1]


def test_the_sweeper_leaves_an_instance_whose_wake_up_is_queued(redis_url: str) -> None:
    handles = _burst("queued")
    client = get_redis()
    sent: list[str] = []

    def send(component: str, instance_id: str, flow: str, seq: int) -> None:
        sent.append(instance_id)

    names = [h.instance_name for h in handles]
    schedule = K.part(K.SWEEP, names[0])

    def all_due() -> bool:
        due = client.zrangebyscore(schedule, "-inf", sweeper.redis_now_ms(client) - 1000)
        return len(due) == N

    wait_for(all_due, 10, "the instances to be due for a sweep (1 s)")
    # no worker took the queued motion.ready message yet: nothing to re-send
    assert sweeper.sweep_once(client, send) == 0 and sent == []
    # the message is lost (its count expired): the sweeper re-wakes them all
    for queue in wakeup.queues_of("Ledger"):
        client.delete(queue, K.READY + queue + ":n")
    wait_for(all_due, 10, "the instances to be due again")
    assert sweeper.sweep_once(client, send) == N
    assert sorted(sent) == sorted(h.instance_id for h in handles)


def test_a_task_leaving_with_its_worker_hands_the_list_on(redis_url: str) -> None:
    client = get_redis()
    queue = wakeup.queue_for("Ledger", "x")
    ready = K.READY + queue
    client.rpush(ready, "Ledger__x", "Ledger__y")
    client.set(ready + ":n", 1)
    keys = [ready, ready + ":n", queue]
    # the worker stops before taking: it counts itself out and pushes a message for
    # another worker, since names remain and no other message is out
    assert scripts.run(client, "ready", keys, [0, 4, "Ledger", 3000]) == [0]
    assert client.get(ready + ":n") == b"1" and client.llen(queue) == 1
    assert client.lrange(ready, 0, -1) == [b"Ledger__x", b"Ledger__y"]
    # with two out, it only counts itself out
    client.set(ready + ":n", 2)
    assert scripts.run(client, "ready", keys, [0, 4, "Ledger", 3000]) == [0]
    assert client.get(ready + ":n") == b"1" and client.llen(queue) == 1


def test_a_motion_ready_message_naming_another_key_touches_nothing() -> None:
    """A malformed or forged ``motion.ready`` (its args are plain text in the broker)
    naming a key that is not one of the component's ready lists is refused before any
    Redis call: the key keeps its items and no message is pushed onto it."""
    from motion.worker.ready import ready_task

    client = get_redis()
    client.delete("user:list", "motion.Other.0")
    client.rpush("user:list", "a", "b", "c")
    queue, ready = wakeup.ready_list("Ledger", "someone")
    for forged in ("user:list", K.READY + "motion.Other.0", ready + "x", queue):
        with pytest.raises(ValueError, match="ready list"):
            ready_task("Ledger", forged)
    assert client.lrange("user:list", 0, -1) == [b"a", b"b", b"c"]
    assert client.llen("motion.Other.0") == 0
    assert wakeup.is_ready_list("Ledger", ready)


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Any:
    """This process drains as a ``-P threads -c 4`` worker would (ready.CAPACITY pooled)."""
    from motion.worker import ready

    size = ready.CAPACITY.size
    ready.configure("threads", 4)
    yield ready
    ready.CAPACITY.resize(size)


def _ready_of(handle: Any) -> tuple[str, str]:
    return wakeup.ready_list("Ledger", handle.instance_id)


def _same_list(prefix: str, ready: str, count: int) -> list[Any]:
    """``count`` fresh instances whose ready list is ``ready``."""
    found = (Ledger(f"{prefix}{i}") for i in range(400))
    return [h for h in found if _ready_of(h)[1] == ready][:count]


def test_a_pooled_task_lingers_on_its_list_and_drains_a_later_instance_with_no_message(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The instance idle after a task emptied its list is pushed with no message while
    the task lingers, and the same task drains it (it shows in that task's result)."""
    import threading

    client = get_redis()
    monkeypatch.setattr(pooled, "LINGER", 20.0)  # long enough to never race the test
    first = Ledger("linger-a")
    queue, ready = _ready_of(first)
    # later instances on the same list (same queue)
    later, last = _same_list("linger-b", ready, 2)
    first.run("add", {"item": "a"})
    assert client.llen(queue) == 1 and client.lrange(ready, 0, -1) == [first.instance_name.encode()]
    client.delete(queue)  # this test runs the task itself
    result: dict[str, Any] = {}
    task = threading.Thread(target=lambda: result.update(pooled.ready_task("Ledger", ready)))
    task.start()
    wait_for(lambda: first.read_state("seqs") == [1], 20, "the first instance to be drained")
    assert client.exists(ready + ":n")  # still counted: it lingers
    later.run("add", {"item": "b"})
    wait_for(lambda: later.read_state("seqs") == [1], 20, "the later instance to be drained")
    assert client.llen(queue) == 0  # no message was sent for it
    pooled.LINGER = 0.05  # after the next one, nothing comes: the task counts out and ends
    last.run("add", {"item": "c"})
    task.join(30)
    assert not task.is_alive()
    assert last.read_state("seqs") == [1] and client.llen(queue) == 0
    assert result["instances"] == {h.instance_name: "1" for h in (first, later, last)}
    assert not client.exists(ready + ":n")
    # counted out: the next idle instance comes with a message of its own
    first.run("add", {"item": "d"})
    assert client.llen(queue) == 1


def test_a_task_past_its_linger_age_counts_out_at_once(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = get_redis()
    monkeypatch.setattr(pooled, "LINGER", 20.0)
    monkeypatch.setattr(pooled, "TAKE_FOR", 0.0)  # too old to linger from the start
    handle = Ledger("old-task")
    queue, ready = _ready_of(handle)
    handle.run("add", {"item": "a"})
    client.delete(queue)
    result = pooled.ready_task("Ledger", ready)  # returns without waiting 20 s
    assert result["instances"] == {handle.instance_name: "1"}
    assert not client.exists(ready + ":n")


def test_an_instance_taken_by_a_lingering_task_and_never_drained_is_re_woken(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lingering task takes a later instance (its take begins the drain: the lease
    is taken) and its worker dies before the drain runs: once the lease runs out, the
    sweeper re-wakes it, even while another task keeps the list counted."""
    import threading

    from motion.floor.outcome import DrainReport

    client = get_redis()
    monkeypatch.setattr(pooled, "LINGER", 2.0)  # the later enqueue comes while it waits
    first = Ledger("lost-first")
    queue, ready = _ready_of(first)
    (later,) = _same_list("lost-later", ready, 1)
    lost: list[str] = []
    drain = pooled._drain

    def dies_before_begin(name: str, begun: Any = None) -> Any:
        if name != later.instance_name:
            return drain(name, begun)
        assert begun is not None and isinstance(begun[0], bytes)  # the take took the lease
        lost.append(name)  # the worker is killed here, before the drain runs
        return DrainReport(name)

    monkeypatch.setattr(pooled, "_drain", dies_before_begin)
    first.run("add", {"item": "a"})
    client.delete(queue)  # this test runs the task itself
    task = threading.Thread(target=lambda: pooled.ready_task("Ledger", ready), daemon=True)
    task.start()
    wait_for(lambda: first.read_state("seqs") == [1], 20, "the first instance to be drained")
    later.run("add", {"item": "b"})  # pushed with no message: the task lingers
    assert client.llen(queue) == 0
    wait_for(lambda: lost == [later.instance_name], 20, "the task to take the later instance")
    task.join(30)
    # killed, the task would not have counted out: its count stays, as it left it
    client.set(ready + ":n", 1, px=wakeup.ready_ttl_ms())
    stop = threading.Event()

    def busy_list() -> None:  # another worker's task keeps taking from the list
        while not stop.is_set():
            pooled._take(client, ready, "Ledger", 4, keep=True)
            stop.wait(0.2)

    other = threading.Thread(target=busy_list, daemon=True)
    other.start()
    sent: list[str] = []
    try:
        wait_for(
            lambda: (
                sweeper.sweep_once(client, lambda c, i, f, s: sent.append(i)) >= 0
                and later.instance_id in sent
            ),
            10,
            f"the sweeper to re-wake {later.instance_name} (sweep period 1 s)",
        )
    finally:
        stop.set()
        other.join(5)


def test_a_lingering_task_with_no_free_slot_leaves_the_list_to_other_workers(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A task whose worker's only slot is busy does not keep its place in the count
    while it waits for a slot: an instance made ready meanwhile comes with a message,
    for a worker with room to take."""
    import threading

    client = get_redis()
    monkeypatch.setattr(pooled, "LINGER", 2.0)
    pooled.configure("threads", 1)  # one drain at a time in this worker
    slow = Ledger("busy-slow")
    queue, ready = _ready_of(slow)
    (other,) = _same_list("busy-other", ready, 1)
    marker = tmp_path / "running"
    slow.run("slow", {"item": "s", "sleep": 4, "marker": str(marker)})
    client.delete(queue)  # this test runs the task itself
    task = threading.Thread(target=lambda: pooled.ready_task("Ledger", ready), daemon=True)
    task.start()
    try:
        wait_for(marker.exists, 20, "the slow update to run (the worker's only slot busy)")
        other.run("add", {"item": "b"})
        assert client.llen(queue) == 1, (
            f"{other.instance_name} sits on {ready} with no message out: the task counts "
            f"for the list while it waits for a slot (count {client.get(ready + ':n')!r})"
        )
    finally:
        task.join(30)
    assert not task.is_alive() and slow.read_state("seqs") == [1]


def test_a_worker_told_to_stop_starts_no_new_drain_while_its_task_lingers(
    start_worker,  # type: ignore[no-untyped-def]
) -> None:
    """SIGTERM to a worker whose ready task lingers (an instance of its list made ready
    every 20 ms, before and after the signal): the instances made ready once the signal
    is handled are not taken by that worker, and come with a message that the next
    worker takes."""
    import signal
    import time

    client = get_redis()
    worker = start_worker(["ledger"], pool="threads", concurrency=4, name="leaving")
    first = Ledger("leave-first")
    queue, ready = _ready_of(first)
    handles = _same_list("leave-", ready, 40)
    first.run("add", {"item": "a"})
    sent: list[tuple[float, Any]] = []
    for k, handle in enumerate(handles):  # (the task lingers 50 ms for each next one)
        if k == 10:
            signalled = time.monotonic()
            worker.proc.send_signal(signal.SIGTERM)
        handle.run("add", {"item": "b"})
        sent.append((time.monotonic(), handle))
        time.sleep(0.02)
    worker.proc.wait(30)
    late = [h for at, h in sent if at > signalled + 0.2]  # (the signal handled by then)
    assert len(late) >= 10
    taken = [h.instance_name for h in late if h.read_state("seqs")]
    assert taken == [], f"a worker told to stop took {taken}"
    assert client.llen(queue) >= 1  # a message for the next worker
    start_worker(["ledger"], pool="threads", concurrency=4, name="next")
    wait_for(lambda: _all_applied(handles, 1), 30, "the next worker to drain the rest")


def test_a_task_past_its_take_age_leaves_the_rest_of_its_list_to_a_new_message(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A prefork child drains one instance at a time: once the task is older than
    TAKE_FOR it stops taking, and what is left on the list comes with a message."""
    from motion.worker import ready

    client = get_redis()
    monkeypatch.setattr(ready, "TAKE_FOR", 0.5, raising=False)
    size = ready.CAPACITY.size
    ready.CAPACITY.resize(0)  # as a prefork child drains: on the task's own thread
    try:
        first = Ledger("aged-first")
        queue, ready_list = _ready_of(first)
        handles = [first, *_same_list("aged-", ready_list, 7)]
        for handle in handles:
            handle.run("slow", {"item": "s", "sleep": 0.2})
        client.delete(queue)  # this test runs the task itself
        result = ready.ready_task("Ledger", ready_list)
    finally:
        ready.CAPACITY.resize(size)
    drained = len(result["instances"])
    assert 1 <= drained < len(handles), result
    assert client.llen(ready_list) == len(handles) - drained
    assert client.llen(queue) >= 1  # a message for what is left


def _scripts_run(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the scripts this process runs from now on, in order."""
    ran: list[str] = []
    run = scripts.run

    def recording(client: Any, name: str, keys: list[str], args: list[Any], fast: bool = False):  # type: ignore[no-untyped-def]
        ran.append(name)
        return run(client, name, keys, args, fast)

    monkeypatch.setattr(scripts, "run", recording)
    return ran


def test_a_take_begins_the_drains_of_the_instances_it_takes(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The take that moves instances off the ready list also takes their leases and
    reads their first windows, so a drain starts with no round trip of its own: a burst
    over a list's instances runs ``ready`` takes and ``commit``s, and no ``begin``."""
    client = get_redis()
    first = Ledger("fold-0")
    queue, ready = _ready_of(first)
    handles = [first, *_same_list("fold-more", ready, 5)]
    for i, handle in enumerate(handles):
        handle.run("add", {"item": f"x{i}"})
    handle.run("add", {"item": "second"})  # two updates in the last one's first window
    client.delete(queue)  # this test runs the task itself
    ran = _scripts_run(monkeypatch)
    result = pooled.ready_task("Ledger", ready)
    # takes (as many as the 4 slots need) and a commit per instance: nothing else
    assert set(ran) == {"ready", "commit"} and ran.count("commit") == len(handles), ran
    assert ran.count("ready") < len(handles), ran
    for i, handle in enumerate(handles[:-1]):
        assert handle.read_state("items") == [f"x{i}"]
        assert result["instances"][handle.instance_name] == "1"
    assert handles[-1].read_state("items") == [f"x{len(handles) - 1}", "second"]
    assert result["instances"][handles[-1].instance_name] == "1-2"
    for handle in handles:  # each lease released, nothing left to wake
        keys = K.InstanceKeys.of(handle.instance_name)
        assert not client.exists(keys.lease)
        assert client.hget(keys.meta, "wake") is None


def test_a_take_leaves_a_large_state_for_the_drain_to_read(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A state larger than ``STATE_LIMIT`` does not come with the take (the drain reads
    it, or uses its own copy): the update still applies on the whole committed state."""
    client = get_redis()
    monkeypatch.setattr(pooled, "STATE_LIMIT", 4096)
    big = Ledger("fold-big")
    small = Ledger("fold-small")
    queue, ready = _ready_of(big)
    (small,) = _same_list("fold-small", ready, 1)
    big.run("add", {"item": "y" * 20_000})
    small.run("add", {"item": "s"})
    client.delete(queue)
    pooled.ready_task("Ledger", ready)
    assert big.read_state("items") == ["y" * 20_000]
    big.run("add", {"item": "z"})
    small.run("add", {"item": "t"})
    client.delete(queue)
    replies: dict[str, Any] = {}
    take = pooled._take

    def seen(*args: Any, **kwargs: Any) -> Any:
        more, names = take(*args, **kwargs)
        replies.update((name, begun) for name, begun in names if begun is not None)
        return more, names

    monkeypatch.setattr(pooled, "_take", seen)
    pooled.ready_task("Ledger", ready)
    state_of = {name: begun[2] for name, begun in replies.items()}
    assert state_of[big.instance_name][1] == 1  # not sent: {tag, 1}
    assert state_of[small.instance_name][1] == 0  # sent: {tag, 0, field, value, ...}
    assert big.read_state("items") == ["y" * 20_000, "z"]
    assert big.read_state("seqs") == [1, 2]
    assert small.read_state("items") == ["s", "t"]


def test_a_take_of_an_instance_another_worker_drains_leaves_it_to_that_worker(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An instance on the list whose lease another worker holds (it drains everything):
    the take takes no lease for it, the task reports it busy, and the holder's lease
    and the pending update are untouched."""
    client = get_redis()
    held = Ledger("fold-busy")
    queue, ready = _ready_of(held)
    held.run("add", {"item": "a"})
    client.delete(queue)
    keys = K.InstanceKeys.of(held.instance_name)
    client.set(keys.lease, b"someone-else", px=5000)
    ran = _scripts_run(monkeypatch)
    result = pooled.ready_task("Ledger", ready)
    assert "begin" not in ran
    assert client.get(keys.lease) == b"someone-else"
    assert "busy" in result["instances"][held.instance_name]
    assert held.read_state("items") == []


def test_under_a_greenlet_pool_each_drain_runs_its_own_begin(
    redis_url: str, pooled: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under ``-P gevent`` the take only takes: each drain begins itself (and opens its
    connection then, not at its commit)."""
    monkeypatch.setattr(pooled.CAPACITY, "folds", True)  # restored so after the test
    pooled.configure("gevent", 4)
    assert not pooled.CAPACITY.folds
    handle = Ledger("greenlet-0")
    queue, ready = _ready_of(handle)
    handle.run("add", {"item": "g"})
    get_redis().delete(queue)
    ran = _scripts_run(monkeypatch)
    pooled.ready_task("Ledger", ready)
    assert ran.count("begin") == 1, ran
    assert handle.read_state("items") == ["g"]
    pooled.configure("threads", 4)
    assert pooled.CAPACITY.folds
