"""The fast lane: commands on the caller's and the worker's hot paths, sent on a raw
connection of a process-wide idle stack instead of through redis-py's client layers.

redis-py's per-command layers (pool checkout under a lock, retry wrapper, event and
observability hooks) cost about as much as a loopback round trip; :func:`fast_command`
(one command) and :func:`fast_pipeline` (several in one round trip) skip them and fall
back to the client itself, which retries, on a connection error.

Floor; uses the floor (budget, connection).
"""

from __future__ import annotations

import collections
import os
import threading
import weakref
from typing import Any

import redis

from motion.floor.budget import BudgetRetry, deadline, room_for
from motion.floor.connection import is_cluster

hiredis: Any
try:
    import hiredis
except ImportError:  # (redis[hiredis] is a dependency; a bare redis-py packs in Python)
    hiredis = None


class _Idle:
    """The idle connections of :func:`fast_command`, one stack per pool, shared by this
    process's threads: a command pops one (or opens one) and pushes it back after its
    reply, so a process holds as many as it ran commands at once, with no lock (a
    deque's pop and append are atomic) and none of the pool's bookkeeping."""

    def __init__(self) -> None:
        # keyed by the pool itself (weakly): a pool dropped by reset() takes its
        # connections along, and a new pool never inherits another's by a reused id
        self.stacks: weakref.WeakKeyDictionary[Any, collections.deque[Any]] = (
            weakref.WeakKeyDictionary()
        )
        self.pid = os.getpid()
        self.lock = threading.Lock()

    def of(self, pool: Any) -> collections.deque[Any]:
        """The idle stack of ``pool`` (a fresh one after a fork: the parent's sockets
        are not this process's)."""
        stack = self.stacks.get(pool) if self.pid == os.getpid() else None
        if stack is None:
            with self.lock:
                if self.pid != os.getpid():
                    self.stacks, self.pid = weakref.WeakKeyDictionary(), os.getpid()
                stack = self.stacks.setdefault(pool, collections.deque())
        return stack

    def take(self, pool: Any) -> tuple[collections.deque[Any], Any]:
        """``pool``'s idle stack and a connection off it (a new one if it is empty):
        push the connection back onto the stack once its reply is read."""
        stack = self.of(pool)
        try:
            return stack, stack.pop()
        except IndexError:
            return stack, pool.connection_class(**pool.connection_kwargs)


_idle = _Idle()
# a fork's child starts with a fresh lock: a parent's thread could hold this one at the
# fork, and it would never be released in the child (the pid check renews the stacks)
os.register_at_fork(after_in_child=lambda: setattr(_idle, "lock", threading.Lock()))


def _packed(conn: Any, args: tuple[Any, ...]) -> bytes:
    """``args`` as one RESP command, packed by hiredis in one
    call (redis-py's packer goes over the arguments in Python first: a few microseconds
    on a commit's 80); an argument hiredis does not take (a bool, None) goes to
    redis-py's packer, which raises its DataError for it as before."""
    if hiredis is not None:
        try:
            return hiredis.pack_command(args)  # type: ignore[no-any-return]  # (bytes)
        except TypeError:
            pass
    return b"".join(conn.pack_command(*args))


def _budget(client: redis.Redis) -> tuple[float, float]:
    """``client``'s retry budget and the length of one try (seconds; 0 without one)."""
    retry = client.get_retry()
    if isinstance(retry, BudgetRetry):
        return retry.seconds, retry.attempt
    return 0.0, 0.0


def _unless_room(exc: BaseException, at: float, attempt: float) -> None:
    """Raise ``exc`` (as a redis-py error) unless a try through the client, which
    retries, still ends before the deadline ``at``."""
    if room_for(at, attempt):
        return
    if isinstance(exc, redis.RedisError):
        raise exc
    raise redis.ConnectionError(str(exc)) from exc


def fast_command(client: redis.Redis, *args: Any) -> Any:
    """Run one command on a connection no other thread uses meanwhile; the raw reply.

    For the hot paths (the caller's version check and enqueue, the worker's drain
    scripts): redis-py's per-command layers (pool checkout under a lock, retry
    wrapper, event hooks) cost about as much as a loopback round trip, so these
    commands skip them. On a connection error the command is sent again through
    ``client``, which retries (a re-sent enqueue is recognized by its token, a re-sent
    commit by its seqs) within what is left of the call's retry budget. Use it only for
    commands whose reply needs no parsing callback. A cluster client runs the command
    itself (it routes by the first key).
    """
    if is_cluster(client):
        return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py untyped here
    idle, conn = _idle.take(client.connection_pool)
    seconds, attempt = _budget(client)
    with deadline(seconds) as at:
        try:
            conn.send_packed_command([_packed(conn, args)])
            reply = conn.read_response()
        except redis.ResponseError:  # an error reply: the connection is fine
            idle.append(conn)
            raise
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            conn.disconnect()
            _unless_room(exc, at, attempt)
            return client.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py untyped here
        except BaseException:  # interrupted mid-reply: the connection's state is unknown
            conn.disconnect()
            raise
    idle.append(conn)
    return reply


def fast_pipeline(client: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Send ``commands`` in one round trip on a connection of :func:`fast_command`'s
    idle stack: their raw replies in order, an error reply as its exception (returned,
    not raised: ``raise_on_error=False``). On a connection error the whole batch is sent
    again through a pipeline of ``client``, which retries (so, as with redis-py's own
    pipelines, a command may arrive twice: send only ones a repeat cannot harm, like a
    commit, which refuses the second). Not for a cluster client."""
    idle, conn = _idle.take(client.connection_pool)
    seconds, attempt = _budget(client)
    replies: list[Any] = []
    with deadline(seconds) as at:  # the fallback's retries share this call's budget
        try:
            conn.send_packed_command([b"".join(_packed(conn, args) for args in commands)])
            for _ in commands:
                try:
                    replies.append(conn.read_response())
                except redis.ResponseError as exc:  # an error reply: the connection is fine
                    replies.append(exc)
        except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
            conn.disconnect()
            _unless_room(exc, at, attempt)
            pipe = client.pipeline(transaction=False)
            for args in commands:
                pipe.execute_command(*args)  # type: ignore[no-untyped-call]  # redis-py untyped here
            replies = pipe.execute(raise_on_error=False)
            return replies
        except BaseException:  # interrupted mid-reply: the connection's state is unknown
            conn.disconnect()
            raise
    idle.append(conn)
    return replies
