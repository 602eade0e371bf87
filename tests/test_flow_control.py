"""Flow control end to end: keep-newest at the op's turn, pause / resume,
on_failure="pause" with retry in place and drop, debounce with the whole batch, due
times, rule 0 (a held update is skipped by other flows, applied in its own order);
on a real redis-server and real Celery worker subprocesses, killed mid-debounce."""

from __future__ import annotations

import re
import sys
import time

import pytest

from motion.caller.control import drop_parked, retry_in_place
from motion.errors import FlowPausedError, TooManyPendingError
from motion.floor import keys as K
from motion.floor import parked as P
from motion.floor.connection import get_redis
from motion.tools import admin
from tests.conftest import reset_motion
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from flow_control import Flowy  # noqa: E402


def solo(start_worker, name: str = "fc"):  # type: ignore[no-untyped-def]
    return start_worker(["flow_control"], pool="solo", concurrency=1, name=name)


def parked_count(handle) -> int:  # type: ignore[no-untyped-def]
    return int(get_redis().zcard(K.InstanceKeys.of(handle.instance_name).parked))


def test_keep_newest_two_over_a_burst_of_eight_runs_exactly_two(redis_url, start_worker):  # type: ignore[no-untyped-def]
    # the drain's first window holds a slow update and the first two of the burst; the
    # other six arrive while the slow op runs: at keep's turn there are eight pending
    handle = Flowy("burst")
    handle.run("slow", {"x": "burst"})
    for x in (1, 2):
        handle.run("keep", {"x": x})
    solo(start_worker)
    client = get_redis()
    wait_for(lambda: client.exists("flowctl:started:burst"), 30, "the slow op to start")
    for x in range(3, 9):
        handle.run("keep", {"x": x})
    client.set("flowctl:go:burst", 1)
    handle.flush_update(timeout=30)
    assert handle.read_state("kept") == [7, 8]
    stats = {k.decode(): int(v) for k, v in client.hgetall(K.stats("Flowy")).items()}
    assert stats["discarded:keep"] == 6 and stats["applied:keep"] == 2
    [row] = admin.status(["Flowy"])
    assert row.flows["keep"]["discarded by keep_newest"] == 6  # per op, in motion status


def test_pause_holds_one_flow_while_others_go_on_then_resume_keeps_its_order(
    redis_url, start_worker
):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("paused")
    assert handle.pause("note") is True
    for x in (1, 2, 3):
        handle.run("note", {"x": x})
    handle.run("tick", {})
    handle.flush_update("tick", timeout=30)  # rule 0: the later tick went past the held notes
    assert handle.read_state("ticks") == 1 and handle.read_state("notes") == []
    started = time.monotonic()
    with pytest.raises(FlowPausedError) as paused:
        handle.flush_update("note", timeout=30)
    assert time.monotonic() - started < 5  # at once, not after the timeout
    assert paused.value.flow == "note" and "resume('note')" in str(paused.value)
    keys = K.InstanceKeys.of(handle.instance_name)
    seqs = [P.parse_member(m)[0] for m in get_redis().zrange(keys.parked, 0, -1)]
    assert seqs == [1, 2, 3] and not P.settled(get_redis(), keys, 1)
    assert handle.resume("note") is True
    handle.flush_update("note", timeout=30)
    assert handle.read_state("notes") == [1, 2, 3]
    assert parked_count(handle) == 0 and P.settled(get_redis(), keys, 1)


def test_pausing_the_instance_holds_every_flow_and_caps_its_inbox(
    redis_url, start_worker, monkeypatch
):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MOTION_MAX_PENDING", "3")
    reset_motion()
    solo(start_worker)
    handle = Flowy("whole")
    handle.pause()
    handle.run("note", {"x": 1})
    handle.run("tick", {})
    handle.run("tick", {})
    with pytest.raises(TooManyPendingError, match="MOTION_MAX_PENDING"):
        handle.run("tick", {})
    with pytest.raises(FlowPausedError, match="whole instance is paused"):
        handle.flush_update(timeout=30)
    assert handle.read_state("ticks") == 0
    handle.resume()
    handle.flush_update(timeout=30)
    assert handle.read_state("ticks") == 2 and handle.read_state("notes") == [1]
    handle.run("tick", {})  # no hold left: no cap
    handle.flush_update(timeout=30)


def test_on_failure_pause_stops_the_flow_until_retried_in_place(redis_url, start_worker):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("fragile")
    client = get_redis()
    handle.run("fragile", {"x": "bad"})
    handle.run("fragile", {"x": "after"})
    handle.run("note", {"x": "other"})
    handle.flush_update("note", timeout=30)
    with pytest.raises(FlowPausedError, match=r"stopped at failed update #1.*retry\(1\)") as err:
        handle.flush_update("fragile", timeout=30)
    assert err.value.reason == "failed:1"
    keys = K.InstanceKeys.of(handle.instance_name)
    assert [r for r in client.zrangebyscore(keys.failed, 1, 1)]  # a dead letter, kept
    wait_for(lambda: client.lrange("flowctl:dead", 0, -1), 10, "on_update_failed")
    assert client.lrange("flowctl:dead", 0, -1) == [b"1:fragile"]  # once
    assert handle.read_state("frag") == []
    assert retry_in_place(handle, 2) is False  # not the update the flow is paused on
    handle.write_state({"allow_bad": True}, timeout=30)
    assert retry_in_place(handle, 1) is True
    handle.flush_update("fragile", timeout=30)
    assert handle.read_state("frag") == ["bad", "after"]  # same seq, order kept
    assert client.zcard(keys.failed) == 0  # re-applied: no longer a dead letter
    assert P.settled(client, keys, 1) and P.settled(client, keys, 2)


def test_dropping_the_failed_update_lets_its_flow_go_on(redis_url, start_worker):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("dropped")
    handle.run("fragile", {"x": "bad"})
    handle.run("fragile", {"x": "after"})
    with pytest.raises(FlowPausedError):
        handle.flush_update("fragile", timeout=30)
    assert drop_parked(handle, 1) is True
    handle.flush_update("fragile", timeout=30)
    assert handle.read_state("frag") == ["after"]
    assert get_redis().zcard(K.InstanceKeys.of(handle.instance_name).failed) == 0
    assert drop_parked(handle, 1) is False


def test_debounce_runs_once_with_the_whole_batch_soon_after_the_quiet(redis_url, start_worker):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("debounced")
    for x in range(10):
        handle.run("deb", {"x": x})
    last = time.monotonic()
    handle.flush_update("deb", timeout=30)  # waits for the debounce to fire
    lag = time.monotonic() - last
    assert handle.read_state("batches") == [[list(range(10)), 0]]
    assert 0.3 < lag < 0.4 + 0.5 + 1.0  # debounce + firing (+ slack for a loaded host)
    keys = K.InstanceKeys.of(handle.instance_name)
    assert get_redis().zscore(K.timers_index(keys.name), keys.name) is None
    assert get_redis().hlen(keys.inbox) == 0


def test_a_debounce_survives_its_worker_being_killed(redis_url, start_worker):  # type: ignore[no-untyped-def]
    first = solo(start_worker, "a")
    handle = Flowy("killed")
    for x in range(3):
        handle.run("longdeb", {"x": x})
    wait_for(lambda: parked_count(handle) == 3, 10, "the updates to be parked")
    first.kill()
    solo(start_worker, "b")  # another worker's firer fires it
    handle.flush_update("longdeb", timeout=30)
    assert handle.read_state("batches") == [[[0, 1, 2], 0]]


def _set_due(handle, seq: int, due_ms: int) -> None:  # type: ignore[no-untyped-def]
    """Give inbox entry ``seq`` the due time ``due_ms`` (Redis' clock), as the submit path
    writes it: ``flow STX ms ETX due ...``."""
    client = get_redis()
    inbox = K.InstanceKeys.of(handle.instance_name).inbox
    entry = client.hget(inbox, seq)
    stamp = re.match(rb"(.*?\x02\d+)(.*)", entry, re.DOTALL)
    assert stamp
    client.hset(inbox, seq, b"%s\x03%d%s" % (stamp[1], due_ms, stamp[2]))


def test_an_update_due_later_is_held_others_go_past_and_it_fires_on_time(redis_url, start_worker):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("timed")
    handle.pause("note")  # so the entry can be given a due time before a drain reads it
    handle.run("note", {"x": "timed"})
    handle.run("note", {"x": "behind"})  # same flow: waits behind it
    wait_for(lambda: parked_count(handle) == 2, 10, "the notes to be parked")
    client = get_redis()
    seconds, micros = client.time()
    due = seconds * 1000 + micros // 1000 + 3000
    _set_due(handle, 1, due)
    handle.resume("note")
    handle.run("tick", {})
    handle.flush_update("tick", timeout=30)
    assert handle.read_state("notes") == []  # held, the later tick applied (rule 0)
    handle.flush_update("note", timeout=30)  # a timer not yet due is not waited for
    assert handle.read_state("notes") == []
    keys = K.InstanceKeys.of(handle.instance_name)
    assert int(client.zscore(keys.timers, "note")) == due
    wait_for(lambda: handle.read_state("notes") == ["timed", "behind"], 30, "the due update")
    applied_at = int(client.hget(keys.meta, "applied_at"))
    assert due <= applied_at < due + 1000  # within the firing delay (loaded host: slack)
    assert client.zscore(K.timers_index(keys.name), keys.name) is None


def test_the_in_process_worker_fires_debounces_too(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Flowy("inproc")
    for x in range(4):
        handle.run("deb", {"x": x})
    handle.flush_update("deb", timeout=30)
    assert handle.read_state("batches") == [[[0, 1, 2, 3], 0]]


def test_without_flow_control_a_drain_parks_nothing(redis_url, start_worker):  # type: ignore[no-untyped-def]
    solo(start_worker)
    handle = Flowy("plain")
    for x in range(5):
        handle.run("note", {"x": x})
    handle.flush_update(timeout=30)
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis()
    assert handle.read_state("notes") == [0, 1, 2, 3, 4]
    assert not client.exists(keys.parked) and not client.exists(keys.timers)
    assert not [k for k in client.hkeys(keys.meta) if k.startswith((b"hold:", b"parked:"))]


def test_a_pause_and_its_updates_survive_the_worker_being_killed(redis_url, start_worker):  # type: ignore[no-untyped-def]
    first = solo(start_worker, "a")
    handle = Flowy("pause-killed")
    handle.pause("note")
    for x in range(3):
        handle.run("note", {"x": x})
    wait_for(lambda: parked_count(handle) == 3, 10, "the notes to be parked")
    first.kill()
    handle.resume("note")  # no worker now: the release waits in Redis (a timer due now)
    solo(start_worker, "b")
    handle.flush_update("note", timeout=30)
    assert handle.read_state("notes") == [0, 1, 2]


def test_a_timer_due_while_no_worker_runs_fires_on_the_next_one(redis_url, start_worker):  # type: ignore[no-untyped-def]
    first = solo(start_worker, "a")
    handle = Flowy("timer-killed")
    handle.pause("note")
    handle.run("note", {"x": "timed"})
    wait_for(lambda: parked_count(handle) == 1, 10, "the note to be parked")
    client = get_redis()
    seconds, micros = client.time()
    due = seconds * 1000 + micros // 1000 + 3000
    _set_due(handle, 1, due)
    handle.resume("note")
    keys = K.InstanceKeys.of(handle.instance_name)
    wait_for(lambda: client.zscore(keys.timers, "note") == due, 10, "the note's timer")
    first.kill()  # before it is due
    assert handle.read_state("notes") == []
    solo(start_worker, "b")
    wait_for(lambda: handle.read_state("notes") == ["timed"], 30, "the due update")


def _inject(monkeypatch, act, release: bool = False):  # type: ignore[no-untyped-def]
    """Run ``act()`` once in the drains this test runs in-process: right after their
    first ``begin`` read the meta (what a drain decides from that read is stale by the
    time it commits), or with ``release``, right before their first release commit
    (``commit`` with ARGV[2] = 0). What ``act()`` returned, in a list."""
    from motion.floor import scripts

    run = scripts.run

    def around(client, name, keys, args, *rest, **kwargs):  # type: ignore[no-untyped-def]
        if release and name == "commit" and str(args[1]) == "0" and not done:
            done.append(act())
        reply = run(client, name, keys, args, *rest, **kwargs)
        if not release and name == "begin" and not done:
            done.append(act())
        return reply

    done: list[object] = []
    monkeypatch.setattr(scripts, "run", around)
    return done


def test_a_resume_while_a_drain_parks_by_the_pause_it_read_still_releases(redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    """The flow is resumed after the drain read its pause and before it parked the
    update: the resume found nothing parked to release, so the commit that parks it
    gives it its way out (a timer due now): it is applied, not parked for good."""
    from motion.worker import engine

    handle = Flowy("resume-race")
    handle.pause("note")
    handle.run("note", {"x": "a"})
    done = _inject(monkeypatch, lambda: handle.resume("note"))
    engine.drain(Flowy, handle.instance_id)
    assert done == [True]  # it was paused, and resumed mid-drain
    assert handle.read_state("notes") == ["a"]
    assert parked_count(handle) == 0


def test_a_resume_while_a_drain_clears_the_paused_flows_timer_still_releases(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """The drain read a paused flow's hold, then the resume gave the flow a timer due
    now: the drain takes it for a stale timer of a held flow and removes it, and must
    still release the flow (it reads the meta again, and a parked flow with no hold
    and no timer is due)."""
    from motion.worker import engine

    handle = Flowy("stale-timer")
    handle.pause("note")
    handle.run("note", {"x": "a"})
    engine.drain(Flowy, handle.instance_id)  # parks it: the flow is paused
    assert parked_count(handle) == 1
    handle.run("tick", {})  # another flow's update starts the next drain
    done = _inject(monkeypatch, lambda: handle.resume("note"))
    engine.drain(Flowy, handle.instance_id)
    assert done == [True]
    assert handle.read_state("notes") == ["a"] and handle.read_state("ticks") == 1
    assert parked_count(handle) == 0


def test_a_drop_while_a_drain_parks_behind_the_failure_it_read_lets_the_flow_go_on(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """The failed update a flow is paused on is dropped after the drain read the hold
    and before it parked the next update behind it: that update is still applied."""
    from motion.worker import engine

    handle = Flowy("drop-race")
    handle.run("fragile", {"x": "bad"})
    engine.drain(Flowy, handle.instance_id)  # fails: the flow pauses on #1
    handle.run("fragile", {"x": "after"})
    done = _inject(monkeypatch, lambda: drop_parked(handle, 1))
    engine.drain(Flowy, handle.instance_id)
    assert done == [True]
    assert handle.read_state("frag") == ["after"]
    assert parked_count(handle) == 0


def test_a_drop_while_a_drain_releases_the_update_keeps_it_out_of_the_state(redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    """A resumed flow's parked #1 is dropped after the drain read it for its release and
    before the release commit, which is refused (#1 is no longer parked). The drain
    must not take the refusal for a commit whose reply was lost: #1 never reaches the
    state, in Redis or in the worker's copy that the next update applies on."""
    from motion.worker import engine

    handle = Flowy("drop-release")
    handle.pause("note")
    handle.run("note", {"x": "a"})
    handle.run("note", {"x": "b"})
    engine.drain(Flowy, handle.instance_id)
    assert parked_count(handle) == 2 and handle.resume("note") is True
    done = _inject(monkeypatch, lambda: drop_parked(handle, 1), release=True)
    engine.drain(Flowy, handle.instance_id)
    assert done == [True] and parked_count(handle) == 0
    assert handle.read_state("notes") == ["b"]
    handle.run("note", {"x": "c"})  # applied on the worker's copy of the state
    engine.drain(Flowy, handle.instance_id)
    assert handle.read_state("notes") == ["b", "c"]


def test_a_drop_while_a_drain_releases_a_debounced_batch_applies_the_rest_once(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """As above, for one update of a debounced batch: the batch is applied once,
    without it."""
    from motion.worker import engine

    handle = Flowy("drop-batch")
    for x in (1, 2, 3):
        handle.run("deb", {"x": x})
    engine.drain(Flowy, handle.instance_id)
    assert parked_count(handle) == 3
    keys = K.InstanceKeys.of(handle.instance_name)
    get_redis().zadd(keys.timers, {"deb": 0})  # the debounce fell due
    done = _inject(monkeypatch, lambda: drop_parked(handle, 2), release=True)
    engine.drain(Flowy, handle.instance_id)
    assert done == [True]
    handle.run("tick", {})
    engine.drain(Flowy, handle.instance_id)
    assert handle.read_state("batches") == [[[1, 3], 0]]


def _write(handle, fields: dict) -> None:  # type: ignore[no-untyped-def]
    """Enqueue a state write (``write_state`` without its wait: the drain is this test's)."""
    from motion.floor.inbox import WRITE_FLOW, Update

    handle._enqueue(Update(WRITE_FLOW, fields))


def test_a_second_retry_while_the_first_is_released_applies_the_update_once(redis_url, monkeypatch):  # type: ignore[no-untyped-def]
    """The flow is paused on failed #1, and #1 is retried in place. A second retry of #1
    comes after the drain read it for its release and before the release commit: #1
    is still a dead letter and still parked, so the retry is in place too (the same
    seq), not a copy enqueued anew."""
    from motion.worker import engine

    handle = Flowy("retry-twice")
    handle.run("fragile", {"x": "bad"})
    engine.drain(Flowy, handle.instance_id)  # fails: the flow pauses on #1
    _write(handle, {"allow_bad": True})
    engine.drain(Flowy, handle.instance_id)
    assert handle.retry(1).seq == 1  # in place
    done = _inject(monkeypatch, lambda: handle.retry(1).seq, release=True)
    engine.drain(Flowy, handle.instance_id)
    engine.drain(Flowy, handle.instance_id)
    assert done == [1]
    assert handle.read_state("frag") == ["bad"]


def test_retrying_a_failed_update_parked_behind_the_one_its_batch_paused_on_keeps_it_in_place(
    redis_url,
):  # type: ignore[no-untyped-def]
    """A batch op pausing on failure fails on #1 and #2: both are dead letters, parked,
    and the flow is paused on #1. Retrying #2 leaves it where it is (it goes when its
    flow does); retrying #1 then applies both, each once."""
    from motion.worker import engine

    handle = Flowy("batch-pause")
    for x in ("a", "b"):
        handle.run("fragbatch", {"x": x})
    engine.drain(Flowy, handle.instance_id)
    assert [d.seq for d in handle.failed_updates()] == [1, 2] and parked_count(handle) == 2
    assert handle.retry(2).seq == 2  # in place: it is parked in its flow
    _write(handle, {"allow_bad": True})
    engine.drain(Flowy, handle.instance_id)
    assert handle.read_state("frag") == []  # still paused on #1
    assert handle.retry(1).seq == 1
    engine.drain(Flowy, handle.instance_id)
    assert handle.read_state("frag") == ["a", "b"]
    assert handle.failed_updates() == [] and parked_count(handle) == 0


def test_dropping_an_update_due_later_lets_the_ones_parked_behind_it_go_now(redis_url):  # type: ignore[no-untyped-def]
    """#1 is submitted due in an hour and #2 of its flow is parked behind it (order).
    Dropping #1 gives the flow a timer due now, not #1's hour."""
    from motion.worker import engine

    handle = Flowy("drop-due")
    handle.submit("note", {"x": "later"}, delay=3600)
    handle.run("note", {"x": "now"})
    engine.drain(Flowy, handle.instance_id)
    assert parked_count(handle) == 2
    assert drop_parked(handle, 1) is True
    engine.drain(Flowy, handle.instance_id)
    assert handle.read_state("notes") == ["now"]


def test_a_drop_of_an_update_due_later_while_a_drain_parks_behind_it_lets_the_flow_go(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """#1 is parked due in an hour; the drain reads that, then #1 is dropped, then the
    drain parks #2 behind it by what it read. #1's timer went with it: #2 goes now."""
    from motion.worker import engine

    handle = Flowy("drop-due-race")
    handle.submit("note", {"x": "later"}, delay=3600)
    engine.drain(Flowy, handle.instance_id)
    handle.run("note", {"x": "now"})
    done = _inject(monkeypatch, lambda: drop_parked(handle, 1))
    engine.drain(Flowy, handle.instance_id)
    assert done == [True]
    assert handle.read_state("notes") == ["now"] and parked_count(handle) == 0


def test_dropping_an_update_cancelled_while_a_drain_parked_it_counts_it_once(
    redis_url, monkeypatch
):  # type: ignore[no-untyped-def]
    """A paused flow's #1 is cancelled after the drain read it and before the drain
    parked it: its tombstone is parked. Dropping it settles the tombstone: the flow's
    pending count is not taken down a second time, and no cancel is left counted (a
    commit would go on paying for tombstones that are gone)."""
    from motion.worker import engine

    handle = Flowy("drop-tombstone")
    handle.pause("note")
    ticket = handle.submit("note", {"x": "a"})
    done = _inject(monkeypatch, ticket.cancel)
    engine.drain(Flowy, handle.instance_id)
    assert done and parked_count(handle) == 1
    assert drop_parked(handle, 1) is True
    meta = get_redis().hgetall(K.InstanceKeys.of(handle.instance_name).meta)
    assert int(meta.get(b"pending:note", 0)) == 0 and int(meta.get(b"cancels", 0)) == 0, meta
