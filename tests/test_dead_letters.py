"""Dead letters: ``handle.failed_updates()``, ``retry(seq)`` (a ticket follows it) and
``drop(seq)``.

Real redis-server; real Celery worker subprocesses apply the updates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from motion import DeadLetter, Ticket
from motion.errors import DeadLetterNotFoundError, NotRetryableError, UpdateFailedError
from motion.floor import keys as K
from motion.floor.connection import get_redis
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from tickets import Tickets  # noqa: E402


def _poisoned(handle: object, tmp_path: Path, item: str = "bad") -> tuple[Ticket, Path]:
    poison = tmp_path / f"poison-{item}"
    poison.write_text("x")
    ticket = handle.submit("note", {"item": item, "poison": str(poison)})  # type: ignore[attr-defined]
    with pytest.raises(UpdateFailedError):
        ticket.wait(timeout=60)
    return ticket, poison


def test_a_failed_update_is_listed_with_its_props(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    start_worker(["tickets"])
    handle = Tickets("listed")
    ticket, poison = _poisoned(handle, tmp_path)
    good = handle.submit("note", {"item": "good"})
    good.wait(timeout=60)  # the failure did not stop the flow (on_failure skip)
    letters = handle.failed_updates()
    assert letters.dropped == 0
    assert [type(x) for x in letters] == [DeadLetter]
    (letter,) = letters
    assert (letter.seq, letter.flow, letter.op) == (ticket.seq, "note", "note")
    assert letter.error == "ValueError: poisoned item 'bad'"
    assert letter.props == {"item": "bad", "poison": str(poison)}
    assert "poisoned item" in letter.traceback
    assert handle.read_state("items") == ["good"]


def test_retry_reapplies_with_a_new_seq_and_the_old_ticket_follows(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    start_worker(["tickets"])
    handle = Tickets("retried")
    ticket, poison = _poisoned(handle, tmp_path)
    poison.unlink()  # the cause is fixed
    again = handle.retry(ticket.seq)
    assert again.seq > ticket.seq and again.flow == "note"
    assert ticket.wait(timeout=60) is None  # follows to the new seq: no failure now
    assert ticket.done() and again.done()
    assert handle.read_state("items") == ["bad"]
    assert handle.failed_updates() == []
    # the same, through a string in another handle: the old ticket still follows
    assert Ticket.parse(str(ticket)).wait(timeout=5) is None
    with pytest.raises(DeadLetterNotFoundError):
        handle.retry(ticket.seq)  # no longer a dead letter


def test_a_retry_that_fails_again_is_a_new_dead_letter(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    start_worker(["tickets"])
    handle = Tickets("twice")
    ticket, _ = _poisoned(handle, tmp_path)
    again = handle.retry(ticket.seq)
    with pytest.raises(UpdateFailedError):
        ticket.wait(timeout=60)  # followed, and the new seq failed
    assert [x.seq for x in handle.failed_updates()] == [again.seq]


def test_drop_removes_a_dead_letter(redis_url: str, start_worker, tmp_path: Path) -> None:
    start_worker(["tickets"])
    handle = Tickets("dropped")
    ticket, _ = _poisoned(handle, tmp_path)
    handle.drop(ticket.seq)
    assert handle.failed_updates() == []
    keys = K.InstanceKeys.of(handle.instance_name)
    assert not get_redis(keys.name).hexists(keys.dead, str(ticket.seq))
    ticket.wait(timeout=5)  # settled: dropped
    with pytest.raises(DeadLetterNotFoundError):
        handle.drop(ticket.seq)
    with pytest.raises(DeadLetterNotFoundError):
        handle.retry(ticket.seq)
    with pytest.raises(KeyError):  # a KeyError, as an unknown key is
        handle.drop(999)


def test_a_dead_letter_without_its_payload_is_listed_but_not_retried(
    redis_url: str, tmp_path: Path
) -> None:
    """A record an earlier release wrote (no entry kept beside it)."""
    handle = Tickets("old-record")
    keys = K.InstanceKeys.of(handle.instance_name)
    record = {"seq": 3, "flow": "note", "op": "note", "error_type": "ValueError",
              "message": "boom", "traceback": "", "at": 1.0}  # fmt: skip
    get_redis(keys.name).zadd(keys.failed, {json.dumps(record): 3})
    (letter,) = handle.failed_updates()
    assert letter.props is None and letter.props_error
    with pytest.raises(NotRetryableError):
        handle.retry(3)
    handle.drop(3)
    assert handle.failed_updates() == []


def test_trimmed_dead_letters_take_their_entries_with_them(
    redis_url: str, start_worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past 1,000 dead letters the oldest go, their kept entries too (counted)."""
    handle = Tickets("trimmed")
    keys = K.InstanceKeys.of(handle.instance_name)
    client = get_redis(keys.name)
    # 1,000 dead letters recorded earlier, each with a kept entry
    client.zadd(keys.failed, {json.dumps({"seq": -s, "flow": "note", "op": "note"}): -s
                              for s in range(1, 1001)})  # fmt: skip
    client.hset(keys.dead, mapping={str(-s): b"note\x00x" for s in range(1, 1001)})
    start_worker(["tickets"])
    _poisoned(handle, tmp_path)
    assert client.zcard(keys.failed) == 1000
    assert client.hget(keys.meta, "failed_dropped") == b"1"
    assert not client.hexists(keys.dead, "-1000")  # the oldest (lowest score) went
    assert client.hlen(keys.dead) == 1000


def test_clearing_an_instance_takes_its_dead_letters(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    from motion.tools import admin

    start_worker(["tickets"])
    handle = Tickets("cleared")
    _poisoned(handle, tmp_path)
    keys = K.InstanceKeys.of(handle.instance_name)
    assert get_redis(keys.name).hlen(keys.dead) == 1
    assert admin.clear_instance(handle.instance_name)
    assert not get_redis(keys.name).exists(keys.dead, keys.failed)


def test_retry_of_the_update_a_paused_flow_stopped_at_is_in_place(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    """``on_failure="pause"``: the flow waits at the dead letter; retry re-applies it with
    the same seq, and the updates behind it follow in order."""
    from motion.errors import FlowPausedError

    start_worker(["tickets"])
    handle = Tickets("in-place")
    poison = tmp_path / "poison"
    poison.write_text("x")
    bad = handle.submit("strict", {"item": "bad", "poison": str(poison)})
    behind = handle.submit("strict", {"item": "behind"})
    with pytest.raises(FlowPausedError):
        bad.wait(timeout=60)
    (letter,) = handle.failed_updates()
    assert letter.seq == bad.seq and letter.props == {"item": "bad", "poison": str(poison)}
    handle.retry(bad.seq)  # not fixed yet: it fails again, in place

    def failed_again() -> bool:
        found = handle.failed_updates()
        return bool(found) and found[0].failed_at != letter.failed_at

    wait_for(failed_again, 60, "the retried update to fail again")
    (letter,) = handle.failed_updates()  # still a dead letter, with its props
    assert letter.seq == bad.seq and letter.props == {"item": "bad", "poison": str(poison)}
    with pytest.raises(FlowPausedError):
        bad.wait(timeout=60)
    poison.unlink()
    again = handle.retry(bad.seq)
    assert again == bad  # in place: the same seq, the same ticket
    behind.wait(timeout=60)
    bad.wait(timeout=5)
    assert handle.read_state("items") == ["bad", "behind"]
    assert handle.failed_updates() == []
    keys = K.InstanceKeys.of(handle.instance_name)
    assert get_redis(keys.name).hlen(keys.dead) == 0  # its kept entry went with it


def test_drop_of_the_update_a_paused_flow_stopped_at_lets_it_go_on(
    redis_url: str, start_worker, tmp_path: Path
) -> None:
    from motion.errors import FlowPausedError

    start_worker(["tickets"])
    handle = Tickets("drop-paused")
    poison = tmp_path / "poison"
    poison.write_text("x")
    bad = handle.submit("strict", {"item": "bad", "poison": str(poison)})
    behind = handle.submit("strict", {"item": "behind"})
    with pytest.raises(FlowPausedError):
        bad.wait(timeout=60)
    handle.drop(bad.seq)
    behind.wait(timeout=60)
    assert handle.read_state("items") == ["behind"]
    keys = K.InstanceKeys.of(handle.instance_name)
    assert handle.failed_updates() == [] and get_redis(keys.name).hlen(keys.dead) == 0
