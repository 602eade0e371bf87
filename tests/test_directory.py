"""The directories of non-empty index parts on a cluster (:mod:`motion.floor.directory`).

On the session's real cluster: the recurring passes (sweeper, firer, exporter, the held
check) read only the parts a directory lists, so their cost follows what is pending,
not the 16,384 slots (counted: the parts each pass hands to the servers); a prune that
races a writer keeps the writer's entry; an entry lost is found by the full pass; and
timers fire within tens of milliseconds of their due time, each once, with two firers.
"""

from __future__ import annotations

import statistics
import sys
import threading
import time
from typing import Any

import pytest

from motion.floor import directory, indexes
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.tools import metrics, producer
from motion.worker import firer, holds, sweeper
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402

WATCHED = (K.PENDING, K.SWEEP, K.TIMERS, K.HELD)


def one_pass(read: list[str], woken: list[Any]) -> dict[str, int]:
    """A sweeper, firer, exporter and held-check pass: the parts each index had read."""
    client = get_redis()
    read.clear()
    sweeper.sweep_once(client, lambda *wake: woken.append(wake))
    firer.fire_once(client, lambda *wake: woken.append(wake))
    metrics.collect(client)
    holds.listing(client)
    return {index: sum(part.startswith(index + ":{") for part in read) for index in WATCHED}


def redis_ms() -> int:
    seconds, micros = get_redis().time()
    return int(seconds) * 1000 + int(micros) // 1000


def test_a_pass_reads_the_parts_listed_not_every_slot(counted: list[str]) -> None:
    woken: list[Any] = []
    assert one_pass(counted, woken) == dict.fromkeys(WATCHED, 0)  # nothing pending: nothing read
    ids = [f"dir-{i}" for i in range(30)]
    for iid in ids:
        Ledger(iid).run("add", {"item": 1})  # pending; no worker takes the wake-ups
    used = {K.tag_of(f"Ledger__{iid}") for iid in ids}
    first = one_pass(counted, woken)
    # the exporter (ZCARD, then the oldest): the listed parts of the pending index, twice
    assert 0 < first[K.PENDING] <= 2 * len(used)
    assert first[K.SWEEP] == 0  # none due for a look yet (one sweep period after pending)
    assert first[K.TIMERS] == first[K.HELD] == 0
    deadline = time.monotonic() + 30
    while len(woken) < len(ids):  # the sweeper re-wakes each, once its look is due
        assert time.monotonic() < deadline, f"swept {len(woken)} of {len(ids)}"
        counts = one_pass(counted, woken)
        # only parts with a look due: read for what is due, then twice to list them anew
        assert counts[K.SWEEP] <= 3 * len(used)
    assert {iid for _, iid, *_ in woken} == set(ids)


def test_a_prune_racing_a_writer_keeps_the_writers_entry(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pass saw the part empty; a writer fills it and lists it (``ZADD LT``) before
    the pass removes the entry: the pass's second read puts the entry back."""
    client = get_redis()
    name = "Ledger__dir-race"
    part, tag = K.part(K.TIMERS, name), K.tag_of(name)
    client.zadd(K.directory(K.TIMERS), {tag: 5})  # listed, but the part is empty
    real = indexes.lowest
    calls: list[int] = []

    def racing(client: Any, parts: list[str]) -> dict[str, float]:
        seen = real(client, parts)
        if not calls:  # between the pass's read and its rewrite: a writer comes
            client.zadd(part, {name: 9_000})
            directory.note(client, K.TIMERS, name, 9_000)  # no-op: 5 is lower
        calls.append(1)
        return seen

    monkeypatch.setattr(indexes, "lowest", racing)
    directory.refresh(client, K.TIMERS, [part])
    assert client.zscore(K.directory(K.TIMERS), tag) == 9_000  # listed, at its lowest
    monkeypatch.setattr(indexes, "lowest", real)
    client.zrem(part, name)
    directory.refresh(client, K.TIMERS, [part])  # empty now: pruned
    assert client.zscore(K.directory(K.TIMERS), tag) is None


def test_an_entry_lost_is_listed_again_by_the_full_pass(cluster_url: str) -> None:
    client = get_redis()
    Ledger("dir-lost").run("add", {"item": 1})
    tag = K.tag_of("Ledger__dir-lost")
    assert client.zscore(K.directory(K.SWEEP), tag) is not None  # the enqueue listed it
    client.delete(K.directory(K.SWEEP))  # as if the process died before listing it
    assert directory.parts(client, K.SWEEP) == []
    assert directory.rebuild_if_due(client) is True  # the lock was free: this one ran it
    assert directory.parts(client, K.SWEEP) == [K.part_at(K.SWEEP, tag)]
    assert directory.rebuild_if_due(client) is False  # once per FULL_PASS_SECONDS
    assert 0 < client.pttl(K.DIRECTORY_LOCK) <= directory.FULL_PASS_SECONDS * 1000


def test_timers_fire_within_100_ms_of_due_each_once_with_two_firers(cluster_url: str) -> None:
    """Timers (as a drain's commit writes them: the due index's part, then listed) over
    many slots; two firers (as two workers run) poll the directory: each timer is sent
    once, and late by the measured distribution below."""
    client = get_redis()
    names = [f"Ledger__dir-timer-{i}" for i in range(40)]
    for name in names:
        Ledger(K.split_instance_name(name)[1])  # created (a firer wakes existing instances)
    fired: dict[str, list[int]] = {}
    lock = threading.Lock()

    def send(component: str, instance_id: str, flow: str, seq: int) -> None:
        with lock:
            fired.setdefault(K.instance_name(component, instance_id), []).append(redis_ms())

    firers = [firer.Firer(send, get_redis) for _ in range(2)]
    for one in firers:
        one.start()
    try:
        start = redis_ms() + 500
        due = {name: start + 25 * i for i, name in enumerate(names)}
        for name, at in due.items():
            client.zadd(K.timers_index(name), {name: at})
            directory.touch(client, K.TIMERS, name)
        wait_for(lambda: len(fired) == len(names), 20, "every timer to fire")
    finally:
        for one in firers:
            one.stop()
    assert all(len(times) == 1 for times in fired.values())  # each claimed by one firer
    late = sorted(fired[name][0] - at for name, at in due.items())
    print(
        f"\ntimers fired late by (ms): min {late[0]} median {statistics.median(late)} "
        f"p90 {late[int(len(late) * 0.9)]} max {late[-1]}"
    )
    assert late[0] >= 0  # never early (Redis' clock)
    assert statistics.median(late) <= 150  # poll <= 50 ms; a loaded host adds its delays
    assert late[-1] <= 1000


def test_on_one_redis_the_plain_key_is_its_own_directory(redis_url: str) -> None:
    """Nothing is listed on a single Redis: the passes read the plain keys, as before."""
    client = get_redis()
    Ledger("dir-single").run("add", {"item": 1})
    assert client.zcard(K.PENDING) == 1
    assert directory.parts(client, K.SWEEP, K.PENDING) == [K.PENDING]
    assert directory.rebuild_if_due(client) is False
    assert not list(client.scan_iter(match=f"{K.PREFIX}:directory*"))
    assert metrics.collect(client).pending_instances == 1


def test_an_enqueue_whose_replica_wait_timed_out_is_listed_and_swept(
    cluster_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update is on the primary though ``run()`` raised: its part is listed all the
    same, so the sweeper wakes it (the wake-up sent was not taken: no worker runs)."""
    from motion import ReplicationTimeoutError
    from tests.conftest import reset_motion

    handle = Ledger("dir-unreplicated")  # created before the option
    monkeypatch.setenv("MOTION_REDIS_MIN_REPLICAS", "2")  # one replica per primary here
    monkeypatch.setenv("MOTION_REDIS_REPLICA_TIMEOUT", "0.2")
    reset_motion()
    with pytest.raises(ReplicationTimeoutError):
        handle.run("add", {"item": 1})
    client = get_redis()
    name = handle.instance_name
    assert client.zscore(K.part(K.PENDING, name), name) is not None  # on the primary
    assert K.part(K.SWEEP, name) in directory.parts(client, K.SWEEP)  # and listed
    woken: list[Any] = []
    wait_for(
        lambda: sweeper.sweep_once(client, lambda *wake: woken.append(wake)) > 0,
        30,
        "the sweeper to wake it",
    )
    assert woken[0][:2] == ("Ledger", "dir-unreplicated")


def test_an_instance_pending_behind_a_backed_off_one_is_swept_in_time(cluster_url: str) -> None:
    """A part's only member was backed off by the sweeper (its next look far ahead: a
    held instance, a queue no worker reads), so its entry is scored then; an instance of
    the same slot that becomes pending now must lower the entry, or the sweeper would
    not look at it before the back-off ends (or the full pass, minutes later)."""
    client = get_redis()
    first = "dir-behind-0"
    tag = K.tag_of(f"Ledger__{first}")
    second = next(
        f"dir-behind-{i}" for i in range(1, 1_000_000) if K.tag_of(f"Ledger__dir-behind-{i}") == tag
    )
    Ledger(first).run("add", {"item": 1})  # pending; no worker takes the wake-ups
    part = K.part(K.SWEEP, f"Ledger__{first}")
    # the state the sweeper's back-off leaves: the next look an hour away, the entry too
    client.zadd(part, {f"Ledger__{first}": redis_ms() + 3_600_000}, xx=True)
    directory.refresh(client, K.SWEEP, [part])
    assert client.zscore(K.directory(K.SWEEP), tag) > redis_ms() + 3_000_000
    Ledger(second).run("add", {"item": 1})  # the same part, not empty: pending from now
    entry = client.zscore(K.directory(K.SWEEP), tag)
    assert entry is not None and entry <= client.zscore(part, f"Ledger__{second}")
    woken: list[Any] = []
    wait_for(
        lambda: sweeper.sweep_once(client, lambda *wake: woken.append(wake)) > 0,
        30,
        "the sweeper to re-wake the second instance",
    )
    assert [wake[:2] for wake in woken] == [("Ledger", second)]


def test_an_enqueue_whose_replica_wait_timed_out_still_sends_its_wake_up(
    cluster_url: str, redis_cluster: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The update is on the primary though ``run()`` raised, and the script marked a
    wake-up in flight (so later enqueues send none): the caller sends it all the same,
    instead of leaving the instance to the sweeper (a retry with the ``dedup_key`` gets
    the first seq and no wake-up to send)."""
    from motion import ReplicationTimeoutError
    from motion.floor import wakeup
    from tests.conftest import reset_motion

    handle = Ledger("dir-unreplicated-wake")  # created before the option
    monkeypatch.setenv("MOTION_REDIS_MIN_REPLICAS", "2")  # one replica per primary here
    monkeypatch.setenv("MOTION_REDIS_REPLICA_TIMEOUT", "0.2")
    reset_motion()
    broker = redis_cluster.broker.client()
    queue = wakeup.queue_for("Ledger", "dir-unreplicated-wake")
    assert broker.llen(queue) == 0
    with pytest.raises(ReplicationTimeoutError) as raised:
        handle.run("add", {"item": 1})
    assert broker.llen(queue) == 1  # the wake-up went out
    with pytest.raises(ReplicationTimeoutError):  # the retry: the same update, no second wake-up
        handle.submit("add", {"item": 1}, dedup_key=raised.value.dedup_key)
    assert broker.llen(queue) == 1
    broker.delete(queue)  # taken: a worker drained it, and the instance is idle again
    client = get_redis()
    client.hdel(K.InstanceKeys.of(handle.instance_name).meta, "wake")
    client.set(K.registered("Ledger"), 0)  # as a worker's first heartbeat does
    with pytest.raises(ReplicationTimeoutError):  # the producer's enqueue sends it too
        producer.enqueue("Ledger", "dir-unreplicated-wake", "add", {"item": 2})
    assert broker.llen(queue) == 1
