"""Tickets: one submitted update, to wait for, cancel, or hand to another process.

``handle.submit(flow, props)`` enqueues a flow's update ops without serving and
returns a :class:`Ticket`. A ticket names the update (component, instance, seq) and
the incarnation it joined, so it means the same thing in any process:
``str(ticket)`` and :meth:`Ticket.parse` carry it across. Waiting is the handle's
:class:`motion.caller.wait.Waiter` (incarnations, worker presence, held instances);
on top of it a ticket *follows* its update when a dead letter is retried with a new
seq (``handle.retry``): the retry records the new seq in the instance's ``dead``
hash (``to:<old seq>``), and a wait that finds it goes on waiting for that seq.

A ticket needs no component definition: any process with the Redis settings can
wait on it. :func:`schedule_ms` checks ``submit``'s ``delay=`` / ``at=``.

Caller road; uses the caller road (control, wait), the floor (connection, drive, errors,
keys, parked, scripts).
"""

from __future__ import annotations

import datetime as dt
import math
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from motion.caller import control
from motion.caller.wait import Waiter
from motion.floor import drive, parked, scripts
from motion.floor import keys as K
from motion.floor.connection import get_async_redis, get_redis, translate_errors
from motion.floor.drive import Steps
from motion.floor.errors import (
    FlowPausedError,
    FlushTimeoutError,
    InstanceClearedError,
    InvalidScheduleError,
    InvalidTicketError,
    UpdateFailedError,
)

#: the first field of a ticket string, and its format's version
PREFIX = "motion-ticket"
VERSION = "1"
#: the furthest ahead a timer may be due (``submit(delay=)`` / ``at=``)
MAX_DELAY_SECONDS = 366 * 86_400
_INCARNATION = re.compile(r"[0-9A-Za-z]{1,64}")


def schedule_ms(delay: float | None, at: dt.datetime | None) -> int | None:
    """The delay in ms of ``submit(delay=, at=)``, or ``None`` (not a timer).

    ``at`` may be aware, or naive, which is taken as UTC. The delay is measured from
    the enqueue on Redis' clock (``at`` is turned into a delay on this machine's).

    Raises:
        InvalidScheduleError: both given, negative, not a number, beyond 366 days.
    """
    if delay is not None and at is not None:
        raise InvalidScheduleError("pass delay= or at=, not both.")
    if at is not None:
        if not isinstance(at, dt.datetime):
            raise InvalidScheduleError(f"at= takes a datetime, got {type(at).__name__}.")
        when = at if at.tzinfo is not None else at.replace(tzinfo=dt.UTC)
        delay = max(0.0, (when - dt.datetime.now(dt.UTC)).total_seconds())
    if delay is None:
        return None
    if isinstance(delay, bool) or not isinstance(delay, int | float) or math.isnan(delay):
        raise InvalidScheduleError(f"delay= takes seconds as a number, got {delay!r}.")
    if delay < 0:
        raise InvalidScheduleError(f"delay= must be >= 0 seconds, got {delay}.")
    if delay > MAX_DELAY_SECONDS:
        raise InvalidScheduleError(
            f"delay of {delay:.0f}s is more than 366 days ahead; a timer that far off is "
            "most likely a unit mistake (delay= is in seconds, at= an absolute datetime)."
        )
    return int(delay * 1000)


@dataclass(frozen=True)
class Ticket:
    """One submitted update: wait for it, cancel it, or pass ``str(ticket)`` on.

    ``seq`` is its place in the instance's order; ``incarnation`` the life of the
    instance it joined (a ticket of a cleared instance raises
    :class:`~motion.errors.InstanceClearedError` on :meth:`wait`).
    """

    component: str
    instance_id: str  # as stored (a dev-mode instance's id starts with ``DEV:``)
    flow: str
    seq: int
    incarnation: str

    # -- passing it on -----------------------------------------------------------
    def __str__(self) -> str:
        parts = (self.component, self.instance_id, self.flow)
        quoted = ":".join(quote(part, safe="") for part in parts)
        return f"{PREFIX}:{VERSION}:{quoted}:{self.seq}:{self.incarnation}"

    @classmethod
    def parse(cls, text: str) -> Ticket:
        """The ticket ``str(ticket)`` wrote (in any process).

        Raises:
            InvalidTicketError: ``text`` is not a ticket string.
        """
        if isinstance(text, Ticket):
            return text
        if not isinstance(text, str):
            raise InvalidTicketError(f"a ticket is a string, got {type(text).__name__}.")
        parts = text.strip().split(":")
        shape = f"{PREFIX}:{VERSION}:<component>:<instance id>:<flow>:<seq>:<incarnation>"
        if len(parts) != 7 or parts[0] != PREFIX:
            raise InvalidTicketError(
                f"{text[:80]!r} is not a ticket; pass the string str(ticket) gave ({shape})."
            )
        if parts[1] != VERSION:
            raise InvalidTicketError(
                f"ticket format {parts[1]!r} is not known here (this motion reads "
                f"{VERSION!r}); upgrade motion where the ticket is read."
            )
        component, instance_id, flow = (unquote(p) for p in parts[2:5])
        seq, incarnation = parts[5], parts[6]
        if not (component and instance_id and flow) or K.SEPARATOR in instance_id:
            raise InvalidTicketError(f"{text[:80]!r} names no instance or flow ({shape}).")
        if not seq.isdigit() or int(seq) < 1:
            raise InvalidTicketError(f"{text[:80]!r}: the seq must be a positive integer.")
        if not _INCARNATION.fullmatch(incarnation):
            raise InvalidTicketError(f"{text[:80]!r}: the incarnation is malformed.")
        return cls(component, instance_id, flow, int(seq), incarnation)

    @property
    def instance_name(self) -> str:
        """``Component__id`` of the instance the update belongs to."""
        return K.instance_name(self.component, self.instance_id)

    # -- waiting -----------------------------------------------------------------
    def wait(self, timeout: float | None = None) -> None:
        """Return once the update is settled: applied, or cancelled (a timer: once it
        was due and applied).

        Raises:
            FlowPausedError: its flow (or the instance) is paused, or stopped at a
                failed update, before it (see ``handle.resume`` / ``handle.retry``).
            UpdateFailedError: it failed (and was not retried; a retried update's
                ticket follows it to its new seq).
            InstanceClearedError: the instance was cleared before it was applied.
            FlushTimeoutError: ``timeout`` seconds passed first (``NoWorkerError``,
                a kind of it, when none was given and no worker was seen).
        """
        drive.drive(self.steps(timeout), get_redis(self.instance_name))

    async def wait_async(self, timeout: float | None = None) -> None:
        """Async twin of :meth:`wait`."""
        await drive.adrive(self.steps(timeout), get_async_redis(self.instance_name))

    def steps(self, timeout: float | None) -> Steps[int]:
        """The steps of :meth:`wait` (for a sync or async driver): the seq it ended on."""
        keys = K.InstanceKeys.of(self.instance_name)
        deadline = None if timeout is None else time.monotonic() + timeout
        seq, inc = self.seq, self.incarnation.encode()
        while True:
            waiter = Waiter(keys, self.component)
            waiter.watch(seq, inc)
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            failed: UpdateFailedError | None = None
            try:
                yield from waiter.steps(
                    self.flow, seq, left, own=True, incarnation=inc, timers=True
                )
            except UpdateFailedError as exc:
                failed = exc
            moved = yield from _moved(keys, seq)
            if moved is None:
                if failed is not None:
                    raise failed
                return seq
            seq = moved

    def done(self) -> bool:
        """Whether the update is settled (applied, failed or cancelled), without waiting.

        Raises:
            InstanceClearedError: the instance was cleared before it was applied.
        """
        return drive.drive(self._done(), get_redis(self.instance_name))

    def _done(self) -> Steps[bool]:
        keys = K.InstanceKeys.of(self.instance_name)
        seq = self.seq
        while True:
            with translate_errors(f"checking ticket #{seq}", keys.name):
                meta = yield drive.command("hmget", keys.meta, "applied", "inc")
                held = yield drive.command("zrangebyscore", keys.parked, seq, seq)
            if meta[1] is None or meta[1].decode() != self.incarnation:
                raise self._cleared()
            if not parked.settled_from(seq, meta, held):
                return False
            moved = yield from _moved(keys, seq)
            if moved is None:
                return True
            seq = moved

    # -- cancelling --------------------------------------------------------------
    def cancel(self) -> bool:
        """Cancel the update while it is not yet applied: it is then never applied,
        and settled as cancelled (:meth:`wait` returns). ``False`` once it is applied
        (or failed): nothing changes. An op already running on it is not stopped;
        its result is not committed. An update held by a flow-control option (a timer
        not due, a paused flow, a debounce) is dropped from where it waits.

        Raises:
            InstanceClearedError: the instance was cleared (the update went with it).
        """
        keys = K.InstanceKeys.of(self.instance_name)
        client = get_redis(keys.name)
        seq = self.seq
        while True:
            with translate_errors(f"cancelling ticket #{seq}", keys.name):
                done = scripts.run(
                    client, "cancel", [keys.meta, keys.inbox], [seq, self.incarnation]
                )
                if done == -1:
                    raise self._cleared()
                if done == 1:
                    return True
                if client.zrangebyscore(keys.parked, seq, seq) and not client.zcount(
                    keys.failed, seq, seq
                ):  # held, not failed: drop it from where it waits
                    if control.drop_parked(keys, seq):
                        return True
                    continue  # released meanwhile: look again
                moved = drive.drive(_moved(keys, seq), client)
            if moved is None:
                return False
            seq = moved

    def _cleared(self) -> InstanceClearedError:
        return InstanceClearedError(
            f"{self.instance_name} was cleared (or lost by Redis) before update "
            f"#{self.seq} of this ticket was applied; it was dropped with that incarnation. "
            "Submit it again if it still applies."
        )


def fresh_after(after: Any, timeout: float | None, instance: str) -> Steps[bool]:
    """``run(after=)``: wait up to ``timeout`` for the update of ticket ``after`` (a
    :class:`Ticket` or its string) of ``instance``; whether it is settled. ``False``:
    the timeout passed, no worker was seen, the instance was cleared, or the update is
    held by a pause (the serve op then runs on the latest committed state)."""
    ticket = Ticket.parse(after)
    if ticket.instance_name != instance:
        raise InvalidTicketError(
            f"after= names a ticket of {ticket.instance_name}, not of {instance}; pass a "
            "ticket of the instance that serves."
        )
    try:
        yield from ticket.steps(timeout)
    except (FlushTimeoutError, InstanceClearedError, FlowPausedError):
        return False
    except UpdateFailedError:  # settled: the state is the one after its turn
        return True
    return True


def _moved(keys: K.InstanceKeys, seq: int) -> Steps[int | None]:
    """The seq dead letter ``seq`` was re-enqueued as (``handle.retry``), if it was."""
    with translate_errors(f"following update #{seq}", keys.name):
        moved: Any = yield drive.command("hget", keys.dead, f"to:{seq}")
    return None if moved is None else int(moved)
