"""The Lua scripts of the update engine, loaded once and run by SHA.

Each script lives in ``motion/floor/lua/<name>.lua`` with a header listing the keys it
touches; ``lua/lib.lua`` (functions they share) is put before each when it loads.
:func:`run` and :func:`arun` call ``EVALSHA`` and fall back to ``EVAL`` the first
time a server has not seen a script (after a restart, say).

A script whose first line is ``#!lua flags=...`` keeps that line first (Redis reads
its flags there): the scripts a drain needs are flagged ``allow-oom``, so workers
still commit, and so free memory, when Redis is at ``maxmemory``; ``enqueue`` and
``init`` are refused then, and :func:`run` raises :class:`RedisFullError` for them.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError

from motion.floor import replication
from motion.floor.connection import is_cluster
from motion.floor.errors import RedisFullError
from motion.floor.lanes import fast_command
from motion.floor.settings import get_settings

NAMES = (
    "enqueue",
    "init",
    "read",
    "begin",
    "renew",
    "window",
    "commit",
    "release",
    "sweep",
    "heartbeat",
    "alive",
    "cache",
    "linger",
    "parts",
    "cancel",
    "drop",
    "control",
    "fire",
    "wake",
    "directory",
    "ready",
    "watch",
)
#: more files of functions put before a script, after lib.lua
LIBRARIES = {
    "commit": ("history.lua",),
    "enqueue": ("ready_lib.lua",),
    "ready": ("ready_lib.lua", "begin_lib.lua"),
    "begin": ("begin_lib.lua",),
}


@dataclass(frozen=True)
class Script:
    """One Lua script: its source and SHA-1."""

    name: str
    source: str
    sha: str


@cache
def get(name: str) -> Script:
    """The script called ``name`` (one of :data:`NAMES`)."""
    folder = resources.files("motion.floor").joinpath("lua")
    own = folder.joinpath(f"{name}.lua").read_text()
    shebang = ""
    if own.startswith("#!"):
        shebang, _, own = own.partition("\n")
        shebang += "\n"
    libs = ["lib.lua", *LIBRARIES.get(name, ())]
    source = shebang + "".join(folder.joinpath(lib).read_text() for lib in libs) + own
    return Script(name, source, hashlib.sha1(source.encode()).hexdigest())


def _full(name: str, exc: redis.exceptions.OutOfMemoryError) -> RedisFullError:
    return RedisFullError(
        f"Redis refused the {name} script: it is at maxmemory ({exc}). Nothing was "
        f"enqueued. Workers still apply (and delete) queued updates at maxmemory, so "
        f"retry once the backlog drained (`motion status` shows it), or raise Redis' "
        f"maxmemory; keep maxmemory-policy noeviction."
    )


#: what a cluster answers while a slot moves, once redis-py's own redirects ran out
#: (``TRYAGAIN``: the keys are split between two nodes mid-migration): the script did
#: not run, so it is sent again, with a growing pause, within the retry budget
_MOVING = (redis.exceptions.TryAgainError, redis.exceptions.ClusterError)


def run(
    client: redis.Redis, name: str, keys: list[str], args: list[Any], fast: bool = False
) -> Any:
    """Run script ``name`` on a synchronous client (``fast``: see
    :func:`motion.floor.connection.fast_command`)."""
    if not is_cluster(client):
        return _run(client, name, keys, args, fast)
    deadline, pause = time.monotonic() + get_settings().redis_retry_seconds, 0.05
    while True:
        try:
            return _run(client, name, keys, args, fast)
        except _MOVING:
            if time.monotonic() + pause > deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.5)


def _run(client: redis.Redis, name: str, keys: list[str], args: list[Any], fast: bool) -> Any:
    script = get(name)
    if replication.wanted(name):
        return replication.run(client, name, script.sha, script.source, keys, args)
    try:
        try:
            if fast:
                return fast_command(client, "EVALSHA", script.sha, len(keys), *keys, *args)
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return client.eval(script.source, len(keys), *keys, *args)
    except redis.exceptions.OutOfMemoryError as exc:
        raise _full(name, exc) from exc


async def arun(client: redis.asyncio.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    """Run script ``name`` on an asyncio client (on a cluster, sent again while its slot
    moves, as :func:`run` does)."""
    if not is_cluster(client):
        return await _arun(client, name, keys, args)
    deadline, pause = time.monotonic() + get_settings().redis_retry_seconds, 0.05
    while True:
        try:
            return await _arun(client, name, keys, args)
        except _MOVING:
            if time.monotonic() + pause > deadline:
                raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, 0.5)


async def _arun(client: redis.asyncio.Redis, name: str, keys: list[str], args: list[Any]) -> Any:
    script = get(name)
    if replication.wanted(name):
        return await replication.arun(client, name, script.sha, script.source, keys, args)
    try:
        try:
            return await client.evalsha(script.sha, len(keys), *keys, *args)
        except NoScriptError:
            return await client.eval(script.source, len(keys), *keys, *args)
    except redis.exceptions.OutOfMemoryError as exc:
        raise _full(name, exc) from exc


def run_after(
    client: redis.Redis,
    command: tuple[str, tuple[list[str], list[Any]]],
    name: str,
    keys: list[str],
    args: list[Any],
) -> Any:
    """Send ``command`` (``("cache", (keys, args))``: the ``cache`` script) and script
    ``name`` in one
    round trip (two on a cluster, whose pipelines refuse scripts); returns the script's
    reply."""
    if is_cluster(client) or replication.wanted(name):
        run(client, command[0], *command[1])
        return run(client, name, keys, args)
    script = get(name)
    pipe = client.pipeline(transaction=False)
    _queue(pipe, command)
    pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies = pipe.execute(raise_on_error=False)
    if isinstance(replies[0], NoScriptError):  # a restarted Redis: load the first one too
        run(client, command[0], *command[1])
    try:
        if isinstance(replies[-1], NoScriptError):
            return client.eval(script.source, len(keys), *keys, *args)
    except redis.exceptions.OutOfMemoryError as exc:
        raise _full(name, exc) from exc
    return _reply(name, replies[-1])


async def arun_after(
    client: redis.asyncio.Redis,
    command: tuple[str, tuple[list[str], list[Any]]],
    name: str,
    keys: list[str],
    args: list[Any],
) -> Any:
    """Async :func:`run_after`."""
    if is_cluster(client) or replication.wanted(name):
        await arun(client, command[0], *command[1])
        return await arun(client, name, keys, args)
    script = get(name)
    pipe = client.pipeline(transaction=False)
    _queue(pipe, command)
    pipe.evalsha(script.sha, len(keys), *keys, *args)
    replies = await pipe.execute(raise_on_error=False)
    if isinstance(replies[0], NoScriptError):  # a restarted Redis: load the first one too
        await arun(client, command[0], *command[1])
    try:
        if isinstance(replies[-1], NoScriptError):
            return await client.eval(script.source, len(keys), *keys, *args)
    except redis.exceptions.OutOfMemoryError as exc:
        raise _full(name, exc) from exc
    return _reply(name, replies[-1])


def _reply(name: str, reply: Any) -> Any:
    if isinstance(reply, redis.exceptions.OutOfMemoryError):
        raise _full(name, reply) from reply
    if isinstance(reply, Exception):
        raise reply
    return reply


def _queue(pipe: Any, command: tuple[str, tuple[list[str], list[Any]]]) -> None:
    verb, params = command
    if verb != "cache":
        raise ValueError(f"unsupported pipelined command {verb!r}")
    keys, args = params  # a serve-cache entry: see motion.floor.cache.Entry
    pipe.evalsha(get("cache").sha, len(keys), *keys, *args)
