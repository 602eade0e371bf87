"""Parked updates: the updates a flow-control option holds, and when an update is settled.

An instance's updates are applied one at a time in enqueue order, and the meta field
``applied`` is a contiguous watermark (every seq up to it has been gone through). An
update *held* by a flow-control option (a debounce not yet fired, a paused flow or
instance, a timer not yet due, a flow paused on a failed update) is *parked* when the
drain reaches it: its seq joins the instance's ``parked`` sorted set (member
``<seq>:<flow>``, score = seq), its payload stays in the inbox, and the watermark
passes it, so later updates of other flows go on. Every later update of a flow with
anything parked is parked too, so a flow keeps its order. When the hold ends the drain
applies that flow's parked updates in seq order before it goes on with the rest.

The hold reasons live in the meta hash: ``hold:*`` (the whole instance paused),
``hold:<flow>`` (``pause`` or ``failed:<seq>``); debounce fire times and due times are in
the instance's ``timers`` sorted set (``flow -> ms``), and the instance's earliest one in
the due index (:func:`motion.floor.keys.timers_index`). A flow with updates parked always
has a way out: a hold (whose resume, retry or drop gives the flow a timer due now) or a
timer. The commit that parks checks it against the meta as it is then, not as the drain
read it (a hold released meanwhile, with nothing parked yet, left no timer): it sets a
timer due now where neither is left (``lua/commit.lua``).

Floor; uses the floor (errors, keys).
"""

from __future__ import annotations

import json
from typing import Any

from motion.floor import keys as K
from motion.floor.errors import FlowPausedError

#: the meta field holding an instance-wide pause
HOLD_ALL = "hold:*"
#: hold reasons (the values of ``hold:<flow>`` / ``hold:*``)
PAUSE = "pause"
FAILED_PREFIX = "failed:"


def hold_field(flow: str | None) -> str:
    """The meta field holding ``flow`` (``None``: the whole instance)."""
    return HOLD_ALL if flow is None else f"hold:{flow}"


def has_parked(meta_flat: list[bytes]) -> bool:
    """Whether the instance has parked updates (a ``parked:<flow>`` count in its meta,
    as a window's flat meta list holds it)."""
    return any(k.startswith(b"parked:") for k in meta_flat[::2])


def in_force(meta_flat: list[bytes], entries: list[bytes | None]) -> bool:
    """Whether flow control may hold an update of this window: a hold or parked updates
    in the meta, or an entry with a due time (``ETX`` in its header). Without any, the
    drain applies the window as it always did."""
    if any(k.startswith((b"hold:", b"parked:")) for k in meta_flat[::2]):
        return True
    return any(e is not None and e.find(b"\x03", 0, max(e.find(b"\x00"), 0)) >= 0 for e in entries)


def member(seq: int, flow: str) -> str:
    """The ``parked`` member of update ``seq`` of ``flow``."""
    return f"{seq}:{flow}"


def parse_member(raw: bytes | str) -> tuple[int, str]:
    """``(seq, flow)`` of a ``parked`` member."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    seq, _, flow = text.partition(":")
    return int(seq), flow


def is_settled(applied: int, seq: int, parked: bool) -> bool:
    """Whether update ``seq`` is settled: the drain is done with it for good.

    The rule: ``seq <= applied`` (the meta field ``applied``) **and** ``seq`` is not in
    the instance's ``parked`` set (``parked``: whether a member scored ``seq`` is there).
    A settled update was applied, discarded by a discard policy, or recorded as failed
    and skipped (``on_failure="skip"``; its record is in the ``failed`` set), or dropped
    (``handle.drop``). An update parked on a failure (``on_failure="pause"``) is *not*
    settled until it is retried and applied, or dropped. Read ``applied`` and the
    parked score in one round trip (:func:`settled_commands`) and the instance's ``inc``
    with them: a seq belongs to one incarnation.
    """
    return seq <= applied and not parked


def settled_commands(keys: K.InstanceKeys, seq: int) -> list[tuple[Any, ...]]:
    """The two commands whose replies :func:`settled_from` reads (pipeline them)."""
    return [
        ("hmget", keys.meta, "applied", "inc"),
        ("zrangebyscore", keys.parked, seq, seq),
    ]


def settled_from(seq: int, meta: list[Any], parked: list[Any]) -> bool:
    """:func:`is_settled` from the replies of :func:`settled_commands`."""
    return is_settled(int(meta[0] or 0), seq, bool(parked))


def settled(client: Any, keys: K.InstanceKeys, seq: int) -> bool:
    """:func:`is_settled` for update ``seq``, read from Redis in one round trip."""
    pipe = client.pipeline(transaction=False)
    for name, *args in settled_commands(keys, seq):
        getattr(pipe, name)(*args)
    meta, parked = pipe.execute()
    return settled_from(seq, meta, parked)


def waits_on(
    name: str, flow: str, members: list[Any], meta: dict[Any, Any], timed: list[Any]
) -> bool:
    """Whether a flush of ``flow`` (``*ALL*``: every flow) must go on waiting for the
    parked updates ``members`` (those up to its target): yes for a debounce not yet
    fired, or a flow released and being applied; no for a timer not yet due (a
    submitted update: not waited for). ``meta`` is the meta hash, ``timed`` the flows
    whose timer (in the instance's ``timers``) is not due yet.

    Raises:
        FlowPausedError: one of them is held by a pause (of its flow or the whole
            instance) or its flow is stopped at a failed update.
    """
    text = {_text(k): _text(v) for k, v in meta.items()}
    timers = {_text(f) for f in timed}
    flows = sorted({f for _, f in map(parse_member, members) if flow in ("*ALL*", f)})
    waiting = False
    for each in flows:
        reason = text.get(HOLD_ALL) or text.get(hold_field(each))
        if reason:
            whole = HOLD_ALL in text
            raise FlowPausedError(
                f"{name}: updates of flow {each!r} are held: "
                + ("the whole instance is paused" if whole else _why(reason))
                + f". {_how(reason, whole, each)}",
                None if whole else each,
                reason,
            )
        if each in timers and f"dfirst:{each}" not in text:
            continue  # a submitted update not due yet
        waiting = True
    return waiting


def without_parked(records: list[Any], members: list[Any]) -> list[Any]:
    """The failure records (JSON) of ``records`` whose update is not parked: a failed
    update its flow is paused on is reported by :class:`FlowPausedError` while it waits,
    and is no failure once retried and applied, or dropped."""
    if not members:
        return records
    held = {parse_member(m)[0] for m in members}
    return [r for r in records if json.loads(r)["seq"] not in held]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _why(reason: str) -> str:
    if reason.startswith(FAILED_PREFIX):
        return f"the flow stopped at failed update #{reason[len(FAILED_PREFIX) :]}"
    return "the flow is paused"


def _how(reason: str, whole: bool, flow: str) -> str:
    if reason.startswith(FAILED_PREFIX):
        seq = reason[len(FAILED_PREFIX) :]
        return f"Retry it (handle.retry({seq})) or drop it (handle.drop({seq}))."
    return "Call handle.resume()" if whole else f"Call handle.resume({flow!r})"
