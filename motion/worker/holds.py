"""Held instances: pending updates that no worker here can go on with, and why.

A drain that meets an update needing code this worker lacks (a flow, an op or a
class the payload names), or a stored state it cannot decode or verify, does not
fail any update: it commits what came before, releases the lease and leaves the
instance *held* (the meta field ``held``, a JSON reason, and the index
``motion:held``), its updates pending in order. The sweeper re-wakes a held
instance later and later (1, 2, 4 ... 64 sweep periods: no hot loop), the first
commit clears the mark, and every worker's main process nudges the held instances
it has the code for (:func:`nudge`), so a worker deployed with the new code takes
them within a sweep period. ``motion status`` lists them (:func:`listing`).

Worker road; uses the worker road (lease) and the floor (keys, scripts); no component code.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import redis

from motion.floor import directory, indexes
from motion.floor import keys as K
from motion.worker import lease as leases

log = logging.getLogger("motion.engine")

#: the two reasons an instance is held
WAITING_FOR_CODE = "waiting for code"
STATE_UNREADABLE = "state unreadable"
#: most held instances one nudge pass or one status call reads
LIMIT = 1000

#: ``can_apply(component, flow, ops)``: whether this process has that code
CanApply = Callable[[str, str, list[str]], bool]
Send = Callable[[str, str, str, int], None]


class Hold(Exception):
    """The drain cannot go on here: ``reason`` (stored as the meta field ``held``)."""

    def __init__(self, reason: dict[str, Any]) -> None:
        super().__init__(reason["error"])
        self.reason = reason


def unreadable(exc: BaseException) -> Hold:
    """The stored state cannot be decoded or verified (or ``load_state`` raised)."""
    return Hold({"held": STATE_UNREADABLE, "error": f"{type(exc).__name__}: {exc}"[:2000]})


def waiting(seq: int, flow: str, ops: tuple[str, ...], what: str, needs: str = "") -> Hold:
    """Update ``seq`` needs code this worker lacks (``needs``: the module, or
    ``module:name``, its payload names, when that is what is missing)."""
    reason = {"held": WAITING_FOR_CODE, "seq": seq, "flow": flow, "ops": list(ops), "error": what}
    if needs:
        reason["needs"] = needs
    return Hold(reason)


def importable(needs: str) -> bool:
    """Whether this process has ``module`` or ``module:name`` (without importing a
    module it has not loaded: it is looked up)."""
    module, _, name = needs.partition(":")
    loaded = sys.modules.get(module)
    if loaded is not None:
        return not name or hasattr(loaded, name.split(".")[0])
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def hold(
    client: redis.Redis,
    lease: leases.Lease,
    held: Hold,
    alert: Callable[[str, BaseException], Any] | None = None,
) -> None:
    """Leave the instance pending and held, release the lease, and say so (a state
    error is logged as an error and passed to ``alert``, the component's
    ``on_state_error``, when the instance becomes held, not on every re-try)."""
    name, reason = lease.keys.name, held.reason
    before = None
    with contextlib.suppress(redis.RedisError, ValueError, TypeError):
        before = json.loads(client.hget(lease.keys.meta, "held") or "null")
    if before is not None and before.get("held") == reason["held"]:
        log.info("%s is still held: %s (%s)", name, reason["held"], reason["error"])
    elif reason["held"] == STATE_UNREADABLE:
        log.error(
            "%s: its stored state cannot be read (%s); its updates stay pending and the "
            "instance is held until the state is repaired (or a worker that can read it "
            "takes it); `motion status` lists it",
            name,
            reason["error"],
        )
        if alert is not None:
            try:
                alert(name, held.__cause__ or held)
            except Exception:
                log.exception("on_state_error raised for %s", name)
    else:
        log.warning(
            "%s: update #%d waits for code this worker lacks (%s); it and the updates "
            "after it stay pending for a worker with the code",
            name,
            reason["seq"],
            reason["error"],
        )
    with contextlib.suppress(redis.RedisError):
        leases.release(client, lease, abandon=True, hold=json.dumps(reason))


def reasons(client: redis.Redis, names: list[str]) -> dict[str, dict[str, Any]]:
    """The held reason of each of ``names`` still held (one round trip)."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hget(K.InstanceKeys.of(name).meta, "held")
    out: dict[str, dict[str, Any]] = {}
    for name, raw in zip(names, pipe.execute(), strict=True):
        if raw is not None:
            with contextlib.suppress(ValueError):
                out[name] = json.loads(raw)
    return out


def listing(client: redis.Redis) -> dict[str, dict[str, Any]]:
    """Held instances (at most :data:`LIMIT`, oldest first) with their reasons."""
    listed = directory.parts(client, K.HELD)  # on a cluster: the non-empty parts only
    names = [n.decode() for n, _ in indexes.oldest(client, K.HELD, LIMIT, parts=listed)]
    found = reasons(client, names)
    gone = [name for name in names if name not in found]
    if gone:  # cleared or applied meanwhile: keep the index bounded
        pipe = client.pipeline(transaction=False)
        for name in gone:
            indexes.forget(pipe, name, K.HELD)
        pipe.execute()
    kept = {K.part(K.HELD, name) for name in found}
    directory.refresh(client, K.HELD, [part for part in listed if part not in kept])
    return found


def nudge(client: redis.Redis, send: Send, can_apply: CanApply) -> int:
    """Wake the instances waiting for code this process has; returns how many."""
    sent = 0
    for name, reason in listing(client).items():
        if reason.get("held") != WAITING_FOR_CODE:
            continue
        if reason.get("needs") and not importable(str(reason["needs"])):
            continue  # the class or module its payload names is not here either
        component, instance_id = K.split_instance_name(name)
        if can_apply(component, str(reason.get("flow", "")), list(reason.get("ops", []))):
            send(component, instance_id, "*code*", int(reason.get("seq", 0)))
            sent += 1
    if sent:
        log.info("woke %d instance(s) waiting for code this worker has", sent)
    return sent
