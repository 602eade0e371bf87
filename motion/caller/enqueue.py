"""Enqueueing a handle's updates: one script call, the instance created on first use.

The enqueue script (``lua/enqueue.lua``) takes the next seq, stores the update
in the inbox, marks the instance pending and, when the broker is the state
Redis, pushes the wake-up itself. Each call carries a fresh token, so the Redis
client re-sending the script after a lost reply finds the update it stored
instead of storing it twice. With ``expect``, the script enqueues only if the
state is still at that version (the one the serve op ran on).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from motion.caller.runtime import ensure_worker, send_wakeup_async, send_wakeup_sync, wakeup_to_push
from motion.caller.serve import CacheWrite
from motion.floor import keys as K
from motion.floor import scripts
from motion.floor.connection import get_async_redis, get_redis, translate_errors
from motion.floor.inbox import Update, encode, enqueue_call, new_token

if TYPE_CHECKING:
    from motion.caller.read import Reader
    from motion.define.component import Component

Enqueued = tuple[int, bytes | None]  # (seq, the incarnation the update joined)


class Enqueuer:
    """Enqueues updates of one instance (for its handle)."""

    def __init__(
        self,
        component: Component,
        instance_id: str,
        reader: Reader,
        *,
        timeout: float | None = None,
    ) -> None:
        self._component = component
        self._timeout = timeout  # the handle's socket timeout (None: the setting)
        self._id = instance_id
        self._reader = reader
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, instance_id))

    def enqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Enqueue ``update`` (storing ``cache_write`` in the same round trip): its seq
        and incarnation, or ``None`` when the state is no longer at version tag
        ``expect``."""
        keys, args = self._call(update, expect)
        name = self._keys.name
        with translate_errors(f"enqueueing {update.flow!r} for {name}", name):
            client = get_redis(name, self._timeout)
            if cache_write is None:
                reply = scripts.run(client, "enqueue", keys, args, fast=True)
            else:
                reply = scripts.run_after(
                    client, ("cache", cache_write.call()), "enqueue", keys, args
                )
            if reply[0] == 0:  # a new instance: create it, then enqueue
                self._reader.create(client)
                reply = scripts.run(client, "enqueue", keys, args)
        enqueued = self._enqueued(reply)
        if enqueued is not None and reply[1] == 1:
            # the script could not push it (another broker): send it now
            send_wakeup_sync(self._component.name, self._id, update.flow, enqueued[0])
        return enqueued

    async def aenqueue(
        self, update: Update, cache_write: CacheWrite = None, expect: bytes = b""
    ) -> Enqueued | None:
        """Async :meth:`enqueue`."""
        keys, args = self._call(update, expect)
        name = self._keys.name
        with translate_errors(f"enqueueing {update.flow!r} for {name}", name):
            client = get_async_redis(name, self._timeout)
            if cache_write is None:
                reply = await scripts.arun(client, "enqueue", keys, args)
            else:
                reply = await scripts.arun_after(
                    client, ("cache", cache_write.call()), "enqueue", keys, args
                )
            if reply[0] == 0:
                await self._reader.aload()  # creates the instance
                reply = await scripts.arun(client, "enqueue", keys, args)
        enqueued = self._enqueued(reply)
        if enqueued is not None and reply[1] == 1:
            await send_wakeup_async(self._component.name, self._id, update.flow, enqueued[0])
        return enqueued

    def _call(self, update: Update, expect: bytes) -> tuple[list[str], list[Any]]:
        entry = encode(self._component, self._keys.name, update)
        wakeup = wakeup_to_push(self._component.name, self._id, update.flow)
        token = new_token()
        return enqueue_call(self._keys, entry, update.flow, wakeup, expect=expect, token=token)

    def _enqueued(self, reply: list[Any]) -> Enqueued | None:
        """Interpret the script's reply: the seq and incarnation, or ``None`` (the state
        moved on)."""
        if reply[0] == -1:  # keep the state it returned, so the caller serves again
            self._reader.remember(reply)
            return None
        ensure_worker()
        return int(reply[0]), reply[2] if len(reply) > 2 else None
