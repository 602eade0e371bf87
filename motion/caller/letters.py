"""A handle's calls on updates it does not serve: ``submit``, ``write_state``, and the
dead letters.

:class:`Letters` is a part of :class:`motion.caller.handle.Instance` (a base class):

- ``submit(flow, props, delay=, at=)`` enqueues a flow's update ops without serving
  and returns a :class:`motion.caller.ticket.Ticket`; ``write_state`` enqueues a write
  of state keys and waits for it;
- ``failed_updates()`` lists the instance's dead letters (:class:`DeadLetter`): the
  failure records of the ``failed`` zset, each with the props of its update, which
  the commit that recorded the failure kept in the ``dead`` hash;
- ``retry(seq)`` re-applies a dead letter in place when its flow is paused on it
  (:func:`motion.caller.control.retry_in_place`), else re-enqueues it with a new seq, in
  one script call that removes the dead letter and records the new seq (``to:<seq>``
  in ``dead``), so a ticket of the old seq follows it; ``drop(seq)`` removes one (and a
  flow paused on it goes on: :func:`motion.caller.control.drop_parked`).

The module functions (:func:`dead_letters`, :func:`retry_stored`, :func:`drop_letter`,
:func:`retry_in_place`) do the same by the instance's keys without the component's code,
for the ``motion`` command: props are read with the component's serializer when its code is
loaded, else the default one; a retry re-enqueues the stored update as it was.

Caller road; uses the caller road (control, enqueue, host, ticket), the definition layer
(component registry), the floor (connection, drive, errors, inbox, keys, serde).
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

from motion.caller import control, host
from motion.caller.enqueue import send_wakeup_sync, wakeup_to_push
from motion.caller.ticket import Ticket, schedule_ms
from motion.define.component import lookup, registered
from motion.floor import directory, drive, scripts
from motion.floor import keys as K
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import (
    DeadLetterNotFoundError,
    InstanceNotFoundError,
    MotionError,
    NotRetryableError,
    UnknownFlowError,
)
from motion.floor.inbox import WRITE_FLOW, Update, decode, enqueue_call, entry_header, new_token
from motion.floor.serde import DEFAULT_SERIALIZER, Definition

if TYPE_CHECKING:
    from motion.caller.enqueue import Enqueuer
    from motion.caller.wait import Waiter
    from motion.define.component import Component


@dataclass(frozen=True)
class DeadLetter:
    """One failed update, kept until retried or dropped (``handle.failed_updates()``).

    ``error`` is ``"Type: message"``; ``props`` the update's props as enqueued
    (``None`` when its payload was not kept: recorded by an older release, or
    unreadable, see ``props_error``).
    """

    seq: int
    flow: str
    op: str
    error: str
    props: dict[str, Any] | None
    error_type: str = ""
    message: str = ""
    traceback: str = ""
    failed_at: float | None = None
    props_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (props shown with ``repr`` where not JSON)."""
        out = dict(self.__dict__)
        out["props"] = (
            None if self.props is None else json.loads(json.dumps(self.props, default=repr))
        )
        return out


class DeadLetters(list[DeadLetter]):
    """The dead letters of an instance, oldest first; ``dropped`` counts the older ones
    beyond the 1,000 kept (not listed)."""

    dropped: int = 0


def dead_letters(keys: K.InstanceKeys, reader: Definition | None = None) -> DeadLetters:
    """The dead letters of the instance of ``keys``, oldest first (props read with
    ``reader``'s serializer; by default the loaded component's, else the default)."""
    client = get_redis(keys.name)
    with translate_errors(f"reading the dead letters of {keys.name}", keys.name):
        pipe = client.pipeline(transaction=True)
        pipe.zrange(keys.failed, 0, -1)
        pipe.hgetall(keys.dead)
        pipe.hget(keys.meta, "failed_dropped")
        records, entries, dropped = pipe.execute()
    reader = reader or _reader(keys)
    out = DeadLetters(_letter(keys, json.loads(raw), entries, reader) for raw in records)
    out.dropped = int(dropped or 0)
    return out


def find_letter(keys: K.InstanceKeys, seq: Any, reader: Definition | None = None) -> DeadLetter:
    """Dead letter ``seq`` (:class:`DeadLetterNotFoundError` if it is not one)."""
    number = _seq(seq)
    client = get_redis(keys.name)
    with translate_errors(f"reading dead letter #{number} of {keys.name}", keys.name):
        records: Any = client.zrangebyscore(keys.failed, number, number)
        entry: Any = client.hget(keys.dead, str(number))
    if not records:
        raise _not_found(keys, number)
    entries = {str(number).encode(): entry} if entry else {}
    return _letter(keys, json.loads(records[0]), entries, reader or _reader(keys))


def drop_letter(keys: K.InstanceKeys, seq: Any) -> None:
    """Remove dead letter ``seq``; a flow paused on it goes on
    (:class:`DeadLetterNotFoundError` if it is not one)."""
    number = _seq(seq)
    paused_on = control.drop_parked(keys, number) if _failed(keys, number) else False
    with translate_errors(f"dropping dead letter #{number} of {keys.name}", keys.name):
        found = scripts.run(get_redis(keys.name), "drop", [keys.failed, keys.dead], [number])
    if not (found or paused_on):
        raise _not_found(keys, number)


def retry_in_place(keys: K.InstanceKeys, seq: Any) -> Ticket | None:
    """Re-apply dead letter ``seq`` where it is, if its flow is paused on it
    (``on_failure="pause"``): its ticket (the same seq); ``None`` otherwise."""
    number = _seq(seq)
    if not _failed(keys, number) or not control.retry_in_place(keys, number):
        return None
    with translate_errors(f"retrying dead letter #{number} of {keys.name}", keys.name):
        inc: Any = get_redis(keys.name).hget(keys.meta, "inc")
        member: Any = get_redis(keys.name).zrangebyscore(keys.parked, number, number)
    flow = member[0].decode().partition(":")[2] if member else find_letter(keys, number).flow
    return _ticket(keys, flow, number, inc)


def retry_stored(keys: K.InstanceKeys, seq: Any) -> Ticket:
    """Re-enqueue dead letter ``seq`` as it was stored (its payload names the ops of the
    code that enqueued it), with a new seq; needs no component code. The new ticket.

    Raises:
        DeadLetterNotFoundError: not a dead letter (any more).
        NotRetryableError: its payload was not kept.
    """
    number = _seq(seq)
    in_place = retry_in_place(keys, number)
    if in_place is not None:
        return in_place
    client = get_redis(keys.name)
    with translate_errors(f"retrying dead letter #{number} of {keys.name}", keys.name):
        records: Any = client.zrangebyscore(keys.failed, number, number)
        entry: Any = client.hget(keys.dead, str(number))
        if not records:
            raise _not_found(keys, number)
        if entry is None:
            raise _not_retryable(keys, number, "its payload was not kept")
        header = entry_header(entry)
        # the stored header less the enqueue (and due) time: the script stamps it anew
        made_by = b"" if header.fingerprint is None else b"\x01" + header.fingerprint.encode()
        fresh = header.flow.encode() + made_by + b"\x00" + entry.partition(b"\x00")[2]
        component, instance_id = K.split_instance_name(keys.name)
        push = wakeup_to_push(component, instance_id, header.flow)
        call = enqueue_call(keys, fresh, header.flow, push, token=new_token(), retry_of=number)
        reply = directory.run_enqueue(client, keys.name, *call)
    if reply[0] == 0:
        raise InstanceNotFoundError(f"{keys.name} does not exist (cleared?).")
    if reply[0] == -3:
        raise _not_found(keys, number)
    if reply[1] == 1:  # the script could not push the wake-up (another broker)
        send_wakeup_sync(component, instance_id, header.flow, int(reply[0]))
    return _ticket(keys, header.flow, int(reply[0]), reply[2])


class Letters:
    """``submit``, ``write_state``, ``failed_updates``, ``retry`` and ``drop`` of a handle."""

    _component: Component
    _keys: K.InstanceKeys
    _enqueuer: Enqueuer
    _waiter: Waiter

    def _start(self, name: str | None, flush_update: bool) -> str:
        raise NotImplementedError  # the handle's

    def _check_open(self) -> None:
        raise NotImplementedError  # the handle's

    def _enqueue(self, update: Update) -> int:
        raise NotImplementedError  # the handle's

    def _client(self) -> Any:
        raise NotImplementedError  # the handle's

    def write_state(
        self, state_update: dict[str, Any], latest: bool = False, timeout: float | None = None
    ) -> None:
        """Write keys into the state, in order with pending updates; returns once applied.

        ``{}`` does nothing; anything but a dict raises ``TypeError``. (``latest``
        is Motion's; writes always apply to the latest state here.) ``timeout``
        bounds the wait (:class:`FlushTimeoutError`); with none, the wait fails with
        :class:`NoWorkerError` once no worker for the component has been seen for
        ``MOTION_WORKER_GRACE_SECONDS``. The write stays queued either way.
        """
        self._check_open()
        if not isinstance(state_update, dict):
            raise TypeError(
                f"write_state takes a dict of state keys, got {type(state_update).__name__}."
            )
        if not state_update:
            return
        seq = self._enqueue(Update(WRITE_FLOW, dict(state_update)))
        drive.drive(self._waiter.steps(WRITE_FLOW, seq, timeout, own=True), self._client())

    def submit(
        self,
        flow: str,
        props: dict[str, Any] | None = None,
        *,
        delay: float | None = None,
        at: dt.datetime | None = None,
        dedup_key: str | None = None,
    ) -> Ticket:
        """Enqueue ``flow``'s update ops with ``props``, without serving; the ticket.

        The update ops see ``props`` (``props.serve_result`` is ``None``). With
        ``delay`` (seconds, >= 0) or ``at`` (a datetime; naive means UTC) it is a
        timer, due that long after the enqueue on Redis' clock. Its failure is
        raised by the ticket's ``wait``, not by ``flush_update`` (which waits for it).
        ``dedup_key`` names the update: a retry with the same key (e.g. a
        :class:`ReplicationTimeoutError`'s ``dedup_key``) enqueues it once.

        Raises:
            UnknownFlowError: the component has no such flow, or it has no update op.
            InvalidScheduleError: both ``delay`` and ``at``, negative, or > 366 days.
        """
        name = self._start(flow, False)
        if not self._component.update_ops(name):
            raise UnknownFlowError(
                f"flow {name!r} of {self._component.name} has no update op: nothing to "
                "submit (run it to serve)."
            )
        if props is not None and not isinstance(props, dict):
            raise TypeError(f"props must be a dict, got {type(props).__name__}.")
        delay_ms = schedule_ms(delay, at)
        enqueued = drive.drive(
            self._enqueuer.steps(
                Update(name, dict(props or {})), delay_ms=delay_ms, dedup_key=dedup_key
            ),
            get_redis(self._keys.name),
        )
        assert enqueued is not None  # no expect: always taken
        return _ticket(self._keys, name, *enqueued)

    def failed_updates(self) -> DeadLetters:
        """The instance's dead letters (failed updates not yet retried or dropped),
        oldest first; at most the newest 1,000 (``.dropped`` counts the others)."""
        return dead_letters(self._keys, self._component)

    def retry(self, seq: int) -> Ticket:
        """Apply dead letter ``seq`` again; its ticket. When its flow is paused on it
        (``on_failure="pause"``), in place: same seq, its flow's order kept (a dead
        letter parked behind it, or already being retried, stays in place too, and
        goes when its flow does). Otherwise re-enqueued (with its props and serve
        result, for the update ops the code has now) with a new seq, whose ticket a
        ticket of the old seq follows.

        Raises:
            DeadLetterNotFoundError: ``seq`` is not a dead letter (any more).
            NotRetryableError: its payload was not kept, or cannot be read here.
        """
        in_place = retry_in_place(self._keys, seq)
        if in_place is not None:
            return in_place
        letter = find_letter(self._keys, seq, self._component)
        entry: Any = get_redis(self._keys.name).hget(self._keys.dead, str(letter.seq))
        if letter.props is None or entry is None:
            raise _not_retryable(self._keys, letter.seq, letter.props_error or "")
        update = decode(self._component, entry, self._keys.name)
        again = Update(letter.flow, update.props, update.serve_result)
        steps = self._enqueuer.steps(again, retry_of=letter.seq)
        enqueued = drive.drive(steps, get_redis(self._keys.name))
        assert enqueued is not None
        return _ticket(self._keys, letter.flow, *enqueued)

    def drop(self, seq: int) -> None:
        """Remove dead letter ``seq`` (its update stays unapplied; a ticket of it is
        settled); a flow paused on it goes on.

        Raises:
            DeadLetterNotFoundError: ``seq`` is not a dead letter (any more).
        """
        drop_letter(self._keys, seq)


# -- internals ------------------------------------------------------------------------
def _reader(keys: K.InstanceKeys) -> Definition:
    """What reads a payload of ``keys``' component here: its definition if loaded, else
    the default serializer."""
    component = K.split_instance_name(keys.name)[0]
    if component in registered():
        return lookup(component)
    return cast(Definition, SimpleNamespace(name=component, serializer=DEFAULT_SERIALIZER))


def _letter(
    keys: K.InstanceKeys, record: dict[str, Any], entries: dict[bytes, bytes], reader: Definition
) -> DeadLetter:
    seq = int(record["seq"])
    entry = entries.get(str(seq).encode())
    props: dict[str, Any] | None = None
    props_error = None if entry else "its payload was not kept (recorded before it was)"
    if entry:
        try:
            props = dict(decode(reader, entry, keys.name).props)
        except MotionError as exc:  # unsigned, corrupt, a class this process lacks
            props_error = f"its payload cannot be read here ({exc})"
    kind, message = record.get("error_type", ""), record.get("message", "")
    return DeadLetter(
        seq=seq,
        flow=record["flow"],
        op=record.get("op", ""),
        error=f"{kind}: {message}",
        props=props,
        error_type=kind,
        message=message,
        traceback=record.get("traceback", ""),
        failed_at=record.get("at"),
        props_error=props_error,
    )


def _ticket(keys: K.InstanceKeys, flow: str, seq: int, incarnation: Any) -> Ticket:
    host.ensure_worker()  # the in-process worker, where this process hosts one
    component, stored = K.split_instance_name(keys.name)
    inc = incarnation.decode() if isinstance(incarnation, bytes) else str(incarnation)
    return Ticket(component, stored, flow, int(seq), inc)


def _failed(keys: K.InstanceKeys, seq: int) -> bool:
    """Whether update ``seq`` has a failure record (is a dead letter)."""
    with translate_errors(f"reading dead letter #{seq} of {keys.name}", keys.name):
        return bool(get_redis(keys.name).zcount(keys.failed, seq, seq))


def _not_found(keys: K.InstanceKeys, seq: int) -> DeadLetterNotFoundError:
    return DeadLetterNotFoundError(
        f"{keys.name}: update #{seq} is not a dead letter (it never failed, was dropped "
        "or retried, or is older than the 1,000 kept); see handle.failed_updates() or "
        f"`motion failed {keys.name}`."
    )


def _not_retryable(keys: K.InstanceKeys, seq: int, why: str) -> NotRetryableError:
    return NotRetryableError(
        f"{keys.name}: dead letter #{seq} cannot be retried: "
        f"{why or 'its payload was not kept'}. Drop it (handle.drop({seq}) or `motion drop "
        f"{keys.name} {seq}`) and submit the update again."
    )


def _seq(seq: Any) -> int:
    """``seq`` as a positive int (``TypeError``/``ValueError`` otherwise)."""
    if isinstance(seq, bool) or not isinstance(seq, int | str):
        raise TypeError(f"a seq is an integer, got {type(seq).__name__}.")
    try:
        number = int(seq)
    except ValueError:
        raise ValueError(f"a seq is a positive integer, got {seq!r}.") from None
    if number < 1:
        raise ValueError(f"a seq is a positive integer, got {seq!r}.")
    return number
