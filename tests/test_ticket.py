"""Tickets: ``handle.submit`` and ``Ticket`` (wait, done, cancel, str/parse), timers'
due time in the entry, and ``run(after=ticket)`` with ``props.fresh``.

Real redis-server; real Celery worker subprocesses apply the updates.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from motion import Ticket
from motion.errors import (
    InstanceClearedError,
    InvalidScheduleError,
    InvalidTicketError,
    UnknownFlowError,
)
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.inbox import entry_header, is_cancelled
from motion.tools import admin
from tests.support import COMPONENTS, ROOT, motion_env, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from tickets import Tickets  # noqa: E402


def _items(handle: object) -> list[str]:
    return list(handle.read_state("items"))  # type: ignore[attr-defined]


def test_a_ticket_passed_as_a_string_is_waited_on_in_another_process(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    handle = Tickets("across")
    ticket = handle.submit("note", {"item": "a"})
    assert (ticket.flow, ticket.seq) == ("note", 1)
    assert Ticket.parse(str(ticket)) == ticket
    code = (
        "import sys; from motion import Ticket; t = Ticket.parse(sys.argv[1]); "
        "t.wait(timeout=60); print('settled', t.seq, t.done())"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", code, str(ticket)],
        env=motion_env(redis_url),
        cwd=str(ROOT),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert not ticket.done()  # no worker yet: submit does not serve nor apply
    start_worker(["tickets"])
    out, err = child.communicate(timeout=90)
    assert child.returncode == 0, err
    assert out.split() == ["settled", "1", "True"]
    assert ticket.done()
    assert _items(handle) == ["a"]


def test_wait_async_and_done(redis_url: str, start_worker) -> None:
    import asyncio

    start_worker(["tickets"])
    handle = Tickets("async")
    ticket = handle.submit("note", {"item": "x"})
    asyncio.run(ticket.wait_async(timeout=60))
    assert ticket.done()
    assert _items(handle) == ["x"]


def test_a_cancelled_update_is_never_applied_and_settles(redis_url: str, start_worker) -> None:
    handle = Tickets("cancel")
    first = handle.submit("note", {"item": "first"})
    second = handle.submit("note", {"item": "second"})
    assert first.cancel() is True
    assert first.cancel() is True  # idempotent
    start_worker(["tickets"])
    second.wait(timeout=60)
    first.wait(timeout=5)  # settled as cancelled: returns
    assert first.done()
    assert _items(handle) == ["second"]
    assert second.cancel() is False  # applied: nothing to cancel
    stats = get_redis(handle.instance_name).hgetall(K.stats("Tickets"))
    assert stats.get(b"cancelled:note") == b"1"
    assert (
        get_redis(handle.instance_name).hget(
            K.InstanceKeys.of(handle.instance_name).meta, "cancels"
        )
        == b"0"
    )


def test_cancelling_an_update_whose_op_is_running_keeps_its_result_out(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    """The worker read the entry before the cancel: its commit is refused, it reads the
    window again, finds the tombstone and commits without the update."""
    start_worker(["tickets"])
    handle = Tickets("racing")
    started, gate = tmp_path / "started", tmp_path / "gate"
    ticket = handle.submit("gated", {"item": "gated", "started": str(started), "gate": str(gate)})
    after = handle.submit("note", {"item": "after"})
    wait_for(started.exists, 60, "the gated op to start")
    assert ticket.cancel() is True
    gate.write_text("open")
    after.wait(timeout=60)
    ticket.wait(timeout=5)
    assert _items(handle) == ["after"]


def test_a_cleared_instances_ticket_raises_on_wait(redis_url: str) -> None:
    handle = Tickets("cleared")
    ticket = handle.submit("note", {"item": "lost"})
    assert admin.clear_instance(handle.instance_name)
    Tickets("cleared")  # a new life of the name
    with pytest.raises(InstanceClearedError):
        ticket.wait(timeout=5)
    with pytest.raises(InstanceClearedError):
        ticket.done()
    with pytest.raises(InstanceClearedError):
        ticket.cancel()


def test_malformed_ticket_strings_are_refused() -> None:
    good = str(Ticket("Tickets", "a:b/c", "note", 7, "ab12"))
    assert Ticket.parse(good).instance_id == "a:b/c"
    for bad in ["", "hello", good.replace("motion-ticket", "x"), good.rsplit(":", 1)[0],
                good.replace(":7:", ":0:"), good.replace(":7:", ":x:"), good + "!",
                good.replace("motion-ticket:1", "motion-ticket:9")]:  # fmt: skip
        with pytest.raises(InvalidTicketError):
            Ticket.parse(bad)
    with pytest.raises(InvalidTicketError):
        Ticket.parse(42)  # type: ignore[arg-type]


def test_a_timer_carries_its_due_time_on_redis_clock(redis_url: str) -> None:
    handle = Tickets("timer")
    ticket = handle.submit("note", {"item": "later"}, delay=5)
    keys = K.InstanceKeys.of(handle.instance_name)
    entry = get_redis(keys.name).hget(keys.inbox, ticket.seq)
    header = entry_header(entry)
    assert header.flow == "note"
    assert header.enqueued_ms is not None and header.due_ms == header.enqueued_ms + 5000
    at = dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(seconds=60)  # naive: UTC
    later = entry_header(
        get_redis(keys.name).hget(keys.inbox, handle.submit("note", {"item": "b"}, at=at).seq)
    )
    assert later.enqueued_ms is not None and later.due_ms is not None
    assert 55_000 < later.due_ms - later.enqueued_ms <= 60_000
    plain = entry_header(
        get_redis(keys.name).hget(keys.inbox, handle.submit("note", {"item": "c"}).seq)
    )
    assert plain.due_ms is None


@pytest.mark.parametrize(
    "when",
    [
        {"delay": -1},
        {"delay": 400 * 86_400},
        {"delay": "5"},
        {"delay": 1, "at": dt.datetime.now(dt.UTC)},
    ],
)
def test_bad_schedules_are_refused(redis_url: str, when: dict) -> None:
    handle = Tickets("bad-timer")
    with pytest.raises(InvalidScheduleError):
        handle.submit("note", {"item": "x"}, **when)
    assert (
        get_redis(handle.instance_name).hget(K.InstanceKeys.of(handle.instance_name).meta, "seq")
        == b"0"
    )


def test_submit_wants_a_flow_with_update_ops(redis_url: str) -> None:
    with pytest.raises(UnknownFlowError):
        Tickets("no-update").submit("read", {})
    with pytest.raises(KeyError):
        Tickets("no-flow").submit("nope", {})


def test_run_after_a_ticket_serves_on_a_state_that_includes_it(
    redis_url: str, start_worker
) -> None:
    start_worker(["tickets"])
    handle = Tickets("after")
    ticket = handle.submit("note", {"item": "mine"})
    served = handle.run("read", {}, after=str(ticket), after_timeout=60)
    assert served == {"items": ["mine"], "fresh": True}
    assert handle.run("read", {}) == {"items": ["mine"], "fresh": None}


def test_run_after_past_its_timeout_serves_the_latest_state(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    import asyncio

    start_worker(["tickets"])
    handle = Tickets("after-slow")
    started, gate = tmp_path / "started", tmp_path / "gate"
    ticket = handle.submit("gated", {"item": "slow", "started": str(started), "gate": str(gate)})
    wait_for(started.exists, 60, "the gated op to start")
    assert handle.run("read", {}, after=ticket, after_timeout=0.2) == {"items": [], "fresh": False}
    stale = asyncio.run(handle.arun("read", {}, after=ticket, after_timeout=0.2))
    assert stale == {"items": [], "fresh": False}
    gate.write_text("open")
    assert handle.run("read", {}, after=ticket, after_timeout=60) == {
        "items": ["slow"],
        "fresh": True,
    }


def test_run_after_refuses_another_instances_ticket(redis_url: str) -> None:
    ticket = Tickets("one").submit("note", {"item": "x"})
    with pytest.raises(InvalidTicketError):
        Tickets("two").run("read", {}, after=ticket)


def test_run_after_a_failed_update_is_fresh(redis_url: str, start_worker, tmp_path: Path) -> None:
    """A failed update is settled: the state served on is the one after its turn."""
    start_worker(["tickets"])
    handle = Tickets("after-failed")
    poison = tmp_path / "poison"
    poison.write_text("x")
    ticket = handle.submit("note", {"item": "bad", "poison": str(poison)})
    assert handle.run("read", {}, after=ticket, after_timeout=60) == {"items": [], "fresh": True}


def test_cancel_follows_a_retried_ticket(redis_url: str, tmp_path: Path) -> None:
    """No worker: the dead letter is planted as a worker would record it, retried, and the
    old ticket's cancel cancels the re-enqueued update."""
    import json

    handle = Tickets("cancel-retried")
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis(keys.name)
    ticket = handle.submit("note", {"item": "again"})
    entry = client.hget(keys.inbox, ticket.seq)
    record = {"seq": ticket.seq, "flow": "note", "op": "note", "error_type": "ValueError",
              "message": "boom", "traceback": "", "at": 1.0}  # fmt: skip
    pipe = client.pipeline()  # what a commit of the failure leaves
    pipe.hdel(keys.inbox, ticket.seq).hset(keys.meta, "applied", ticket.seq)
    pipe.zadd(keys.failed, {json.dumps(record): ticket.seq}).hset(keys.dead, ticket.seq, entry)
    pipe.execute()
    again = handle.retry(ticket.seq)
    assert not ticket.done()  # follows to the new seq, not applied yet
    assert ticket.cancel() is True
    assert is_cancelled(client.hget(keys.inbox, again.seq))


def test_a_timer_ticket_waits_until_it_is_due_and_applied(redis_url: str, start_worker) -> None:
    start_worker(["tickets"])
    handle = Tickets("timed")
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis(keys.name)
    ticket = handle.submit("note", {"item": "later"}, delay=1.0)
    due = entry_header(client.hget(keys.inbox, ticket.seq)).due_ms
    other = handle.submit("strict", {"item": "x"})
    other.wait(timeout=60)  # a later update of another flow went past the timer (rule 0)
    assert not ticket.done()
    assert handle.read_state("items") == ["x"]
    ticket.wait(timeout=60)
    assert ticket.done() and handle.read_state("items") == ["x", "later"]
    assert due is not None and int(client.hget(keys.meta, "applied_at")) >= due


def test_a_held_timer_is_cancelled_where_it_waits(redis_url: str, start_worker) -> None:
    start_worker(["tickets"])
    handle = Tickets("timer-cancel")
    ticket = handle.submit("note", {"item": "never"}, delay=300)
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis(keys.name)
    wait_for(lambda: client.zcard(keys.parked) == 1, 30, "the timer to be parked")
    assert not ticket.done()
    assert ticket.cancel() is True
    ticket.wait(timeout=10)  # settled: it will never be applied
    assert ticket.done()
    handle.submit("note", {"item": "now"}).wait(timeout=60)
    assert handle.read_state("items") == ["now"]
    assert client.hlen(keys.inbox) == 0 and client.zcard(keys.parked) == 0
