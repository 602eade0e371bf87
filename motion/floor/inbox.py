"""The per-instance inbox: update payloads, enqueueing, waiting, failure records.

An inbox entry is ``flow [STX ms] [ETX due_ms] [SOH fingerprint] NUL sealed-payload``.
The flow name stays readable (for counters and failure records) even when the payload
is corrupt or unsigned. The enqueue script inserts ``STX ms``: Redis' clock at the
enqueue, the one clock ages are measured by; and, for a timer (``submit(delay=)``),
``ETX due_ms``: when it is due, on the same clock (the drain holds it until then, see
:mod:`motion.floor.parked`). A cancelled update's entry is replaced by its tombstone
``flow NUL`` (no payload: :func:`is_cancelled`). The fingerprint names the definition
whose handle enqueued it (the one that applies it, see :mod:`motion.define.definitions`).
The payload is the serialized :class:`Update`, signed (with a signing key) for the
instance it was enqueued to, so a payload copied into another inbox is refused; it
names the update ops the caller's code has for the flow (a worker lacking one leaves
the update for a worker that has it). Entries written with fewer header parts
(``flow NUL sealed-payload``) are read too. Enqueueing is one Lua script call that
takes the next sequence number, stores the entry and marks the instance pending;
when nobody is draining the instance it also tells the caller to send a wake-up.

Floor; uses the floor (errors, keys, serde, settings, wakeup).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from motion.floor import keys as K
from motion.floor.errors import DefinitionError, FailedUpdate, PayloadError, ReplicationTimeoutError
from motion.floor.serde import Definition, binding, dump_value, load_value, seal, unseal
from motion.floor.settings import get_settings
from motion.floor.wakeup import ready_ttl_ms

#: flows reserved for motion's own entries (users cannot name a flow with "::")
WRITE_FLOW = "::write"
MIGRATE_FLOW = "::migrate"
ALL_FLOWS = "*ALL*"


#: the separators of an entry's header, which no flow name may hold
HEADER_CHARS = "\x00\x01\x02\x03"


def check_flow_name(flow: object) -> str:
    """``flow`` if it can name a flow (a definition's or a producer's), else raise
    :class:`DefinitionError`: a flow name holding a header separator would read as
    another flow in the stored entry."""
    if not isinstance(flow, str) or not flow:
        raise DefinitionError(f"flow names must be non-empty strings, got {flow!r}.")
    if "::" in flow or any(c in flow for c in HEADER_CHARS):
        raise DefinitionError(
            f"flow name {flow!r} must not contain '::' or the control characters NUL, SOH, "
            "STX, ETX."
        )
    return flow


@dataclass
class Update:
    """One enqueued update: the flow, its props and serve result, when it was enqueued.

    ``ops`` names the update ops the enqueuing code has for the flow (filled in by
    :func:`encode`); ``enqueued_at`` is Redis' clock once the update is in the inbox.
    """

    flow: str
    props: dict[str, Any]
    serve_result: Any = None
    enqueued_at: float = field(default_factory=time.time)
    ops: tuple[str, ...] = ()


def encode(component: Definition, name: str, update: Update) -> bytes:
    """The inbox entry for ``update`` (raises SerializationError / StateTooLargeError)."""
    settings = get_settings()
    # a producer without the component's code (see motion.tools.producer) names no ops
    update_ops = getattr(component, "update_ops", None)
    ops = update.ops or tuple(op.name for op in (update_ops(update.flow) if update_ops else ()))
    body = dump_value(
        component.serializer,
        f"props or serve result of flow {update.flow!r} for {name}",
        (update.flow, dict(update.props), update.serve_result, update.enqueued_at, ops),
        settings.max_value_bytes,
    )
    # a producer without the component's code (motion.tools.producer) has no definition
    fingerprint = getattr(component, "fingerprint", None)
    made_by = b"\x01" + fingerprint().encode() if fingerprint is not None else b""
    sealed = seal(body, settings.signing_key, binding(name))
    return update.flow.encode() + made_by + b"\x00" + sealed


@dataclass(frozen=True)
class EntryHeader:
    """The readable part of an inbox entry, before its first NUL."""

    flow: str
    enqueued_ms: int | None  # Redis' clock at the enqueue, if the script wrote it
    fingerprint: str | None  # the enqueuing definition, if recorded
    due_ms: int | None = None  # Redis' clock when a submitted update falls due, if held


def entry_header(entry: bytes) -> EntryHeader:
    """Parse an entry's header without deserializing anything (raises PayloadError)."""
    header, sep, _ = entry.partition(b"\x00")
    if not sep:
        raise PayloadError("inbox entry has no flow header (corrupt or not written by motion)")
    head, _, fingerprint = header.partition(b"\x01")
    head, timed, due = head.partition(b"\x03")
    flow, stamped, ms = head.partition(b"\x02")
    return EntryHeader(
        flow.decode(errors="replace"),
        int(ms) if stamped and ms.isdigit() else None,
        fingerprint.decode(errors="replace") or None,
        int(due) if timed and due.isdigit() else None,
    )


def is_cancelled(entry: bytes | None) -> bool:
    """Whether ``entry`` is a cancelled update's tombstone (``flow NUL``, no payload)."""
    return entry is not None and entry.endswith(b"\x00") and entry.count(b"\x00") == 1


def entry_flow(entry: bytes) -> str:
    """The flow of an inbox entry, read without deserializing anything."""
    return entry_header(entry).flow


def entry_time(entry: bytes) -> float | None:
    """When the enqueue script stored ``entry`` (Redis' clock, seconds), if it says."""
    ms = entry_header(entry).enqueued_ms
    return None if ms is None else ms / 1000


def entry_definition(entry: bytes | None) -> str | None:
    """The fingerprint of the definition that enqueued an entry (``None``: not recorded)."""
    if entry is None or b"\x00" not in entry:
        return None
    return entry_header(entry).fingerprint


def decode(component: Definition, entry: bytes, name: str) -> Update:
    """The :class:`Update` of an inbox entry of instance ``name``; checks the signature
    before unpickling."""
    flow = entry_flow(entry)
    body = unseal(entry.partition(b"\x00")[2], get_settings().signing_key, binding(name))
    value = load_value(component.serializer, f"payload of flow {flow!r}", body)
    if not (isinstance(value, tuple) and len(value) in (4, 5) and value[0] == flow):
        raise PayloadError(f"payload of flow {flow!r} has an unexpected shape")
    ops = tuple(value[4]) if len(value) == 5 else ()
    stored = entry_time(entry)
    return Update(value[0], value[1], value[2], value[3] if stored is None else stored, ops)


def new_token() -> str:
    """A fresh enqueue token: a client that re-sends the same enqueue (same token) after
    a lost reply gets the seq of the first, instead of a second update."""
    return base64.b64encode(os.urandom(12)).decode()


def token_for(dedup_key: str | None) -> tuple[str, str]:
    """``(dedup key, enqueue token)`` of an enqueue given ``dedup_key`` (``None``: a
    random key, so a retry after :class:`ReplicationTimeoutError` can name it again):
    the same key gives the same token, whoever enqueues (a handle, the producer)."""
    if dedup_key is not None and (not isinstance(dedup_key, str) or not dedup_key):
        raise TypeError(f"dedup_key must be a non-empty string, got {dedup_key!r}.")
    key = new_token() if dedup_key is None else dedup_key
    return key, f"k:{key}"


@contextlib.contextmanager
def keyed(dedup_key: str) -> Iterator[None]:
    """Give a :class:`ReplicationTimeoutError` raised within the enqueue's ``dedup_key``,
    the key to retry with."""
    try:
        yield
    except ReplicationTimeoutError as exc:
        exc.dedup_key = dedup_key
        raise


def enqueue_call(
    keys: K.InstanceKeys,
    entry: bytes,
    flow: str,
    wakeup: tuple[str, bytes] | None = None,
    *,
    expect: bytes | str = "",
    token: str = "",
    delay_ms: int | None = None,
    retry_of: int | None = None,
    ready: tuple[str, str, str] | None = None,
) -> tuple[list[str], list[Any]]:
    """KEYS and ARGV of the enqueue script (see ``lua/enqueue.lua``).

    Args:
        wakeup: ``(queue, message)`` for the script to push if the instance needs waking.
        expect: enqueue only if the state version is still this one (the version the
            serve op ran on); otherwise the script returns the current state.
        token: the enqueue's token (:func:`new_token`); ``""`` for none.
        delay_ms: make it a timer due this long after the enqueue (Redis' clock).
        retry_of: the seq of the dead letter this update re-enqueues (the script
            removes the dead letter and records where it went, or enqueues nothing).
        ready: ``(queue, ready list, component)``: put an idle instance on the ready list
            (one ``motion.ready`` message for many instances) instead of ``wakeup``.
    """
    now = int(time.time() * 1000)
    period = K.DEDUP_SECONDS * 1000
    dedup = [keys.dedup(now), keys.dedup(now - period)]
    pending, sweep = K.part(K.PENDING, keys.name), K.part(K.SWEEP, keys.name)
    script_keys = [keys.meta, keys.inbox, keys.lease, pending, *dedup, keys.state, sweep]
    script_keys += [keys.dead, keys.failed, keys.nudge]
    coalesce = "0" if get_settings().wakeup_per_update else "1"
    args: list[Any] = [entry, flow, now, keys.name, expect, token, 2 * period, coalesce]
    args.append(b"" if wakeup is None else wakeup[1])
    args += ["" if delay_ms is None else delay_ms, "" if retry_of is None else retry_of]
    if ready is not None:
        script_keys += [ready[0], ready[1]]
        args += [ready[2], ready_ttl_ms()]
    elif wakeup is not None:
        script_keys.append(wakeup[0])
    return script_keys, args


def wake_left(reply: Any) -> bool:
    """Whether the enqueue script's ``reply`` (an update stored) leaves the wake-up to
    its caller: the script could not push it (another broker) and marked it in flight,
    so no later enqueue sends one; also a reply a :class:`ReplicationTimeoutError`
    carries (the update is on the primary)."""
    return isinstance(reply, list) and len(reply) > 1 and int(reply[0]) > 0 and reply[1] == 1


def target_field(flow: str) -> str:
    """The meta field holding the last seq to wait for (of one flow, or of all)."""
    return "seq" if flow == ALL_FLOWS else f"last:{flow}"


def parse_failures(name: str, records: list[bytes], flow: str) -> list[FailedUpdate]:
    """Failure records (JSON) from the ``failed`` set, limited to ``flow`` unless ``*ALL*``."""
    out = []
    for raw in records:
        rec = json.loads(raw)
        if flow in (ALL_FLOWS, rec["flow"]):
            out.append(
                FailedUpdate(
                    name, rec["seq"], rec["flow"], rec["op"], rec["error_type"], rec["message"]
                )
            )
    return out


def failure_record(seq: int, flow: str, op: str, exc: BaseException, tb: str = "") -> str:
    """The JSON stored for a failed update."""
    return json.dumps(
        {
            "seq": seq,
            "flow": flow,
            "op": op,
            "error_type": type(exc).__name__,
            "message": str(exc)[:2000],
            "traceback": tb[-4000:],
            "at": time.time(),
        }
    )


@dataclass
class Window:
    """A window of the inbox as the ``begin`` and ``window`` scripts return it: the next
    updates to apply (``entries`` from seq ``applied + 1``) and the meta hash."""

    meta_flat: list[bytes]
    entries: list[bytes | None]
    _fields: dict[bytes, bytes] | None = field(default=None, init=False, repr=False, compare=False)

    def _meta(self, name: bytes) -> bytes | None:
        if self._fields is None:  # read for each seq and clock: built once
            self._fields = dict(zip(self.meta_flat[::2], self.meta_flat[1::2], strict=True))
        return self._fields.get(name)

    def first_seq(self) -> int:
        """The seq of ``entries[0]``."""
        return int(self._meta(b"applied") or 0) + 1

    def last_seq(self) -> int:
        """The last seq enqueued when the window was read."""
        return int(self._meta(b"seq") or 0)

    def now(self) -> float | None:
        """Redis' clock when the window was read (seconds)."""
        now = self._meta(b"now")
        return int(now) / 1000 if now is not None else None

    def pending(self) -> dict[str, int]:
        """Updates not yet applied, per flow (the discard policies count them)."""
        return {
            k.decode()[len("pending:") :]: int(v)
            for k, v in zip(self.meta_flat[::2], self.meta_flat[1::2], strict=True)
            if k.startswith(b"pending:")
        }


#: a traceback's frame line: file, line, function
_FRAME = re.compile(r'File "([^"]+)", line (\d+), in (\S+)')


def failure_summary(
    instance: str, failed: int, applied: int, seqs: str | None, records: list[str]
) -> str:
    """What a failed drain's task error says: counts, then each failure record (JSON, as
    stored) and where it was raised."""
    lines = [
        f"{instance}: {failed} update(s) failed and were recorded as failed "
        f"(not retried); {applied} applied (seqs {seqs})"
    ]
    for raw in records:
        record = json.loads(raw)
        frames = _FRAME.findall(record.get("traceback", ""))
        where = (
            f" at {Path(frames[-1][0]).name}:{frames[-1][1]} in {frames[-1][2]}" if frames else ""
        )
        lines.append(
            f"#{record['seq']} (flow {record['flow']}, op {record['op']}) "
            f"{record['error_type']}: {record['message']}{where}"
        )
    if failed > len(records):
        lines.append(f"and {failed - len(records)} more (see motion status)")
    return "; ".join(lines)
