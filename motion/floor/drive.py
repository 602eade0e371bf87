"""Sans-I/O driving: one implementation of a conversation with Redis, two front ends.

As h11 does for HTTP, a caller-side operation (reading a state, creating an
instance, enqueueing, a whole ``run``) is written once, as a generator that
*yields* each :class:`Step` it needs done (a script, a command, a pause, a blocking
computation) and receives the step's result. :func:`drive` runs the steps on a
synchronous Redis client; :func:`adrive` awaits them on an asyncio client. An
exception a step raises is thrown back into the generator at its ``yield``, so the
``try`` and ``with`` blocks of the one implementation see it as if the call had been
made there.

Floor: uses :mod:`motion.floor.scripts` only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from typing import Any, NamedTuple, TypeVar

from motion.floor import scripts

T = TypeVar("T")


#: One thing to do: ``(sync, asynchronous, args)``, run as ``sync(client, *args)`` or
#: ``await asynchronous(client, *args)``. A plain tuple: a step is made per call on
#: ``run``'s hot path, and a tuple costs no Python frame to make.
Step = tuple[Callable[..., Any], Callable[..., Awaitable[Any]], tuple[Any, ...]]


class Item(NamedTuple):
    """Not a step: an item for the driver to hand to its caller (a streamed result)."""

    value: Any


Steps = Generator[Any, Any, T]  # yields Step (and Item, for drive_items), returns T


class _Done(NamedTuple):
    value: Any


def _resume(steps: Steps[Any], value: Any, error: BaseException | None) -> Any:
    """Hand the last step's result (or error) to ``steps``: the next Step or Item, or
    :class:`_Done` with the generator's result."""
    try:
        return steps.throw(error) if error is not None else steps.send(value)
    except StopIteration as done:
        return _Done(done.value)


def drive_items(steps: Steps[T], client: Any) -> Generator[Any, None, T]:
    """Run ``steps`` on the synchronous ``client``, yielding each :class:`Item`'s value;
    returns the steps' result."""
    value, error = None, None
    while not isinstance(step := _resume(steps, value, error), _Done):
        value, error = None, None
        if isinstance(step, Item):
            yield step.value
            continue
        try:
            value = step[0](client, *step[2])
        except BaseException as exc:  # the one implementation decides what it means
            error = exc
    return step.value  # type: ignore[no-any-return]  # the generator's T


def drive(steps: Steps[T], client: Any) -> T:
    """Run ``steps`` (which yield no :class:`Item`) to their result on ``client``: the
    loop of :func:`drive_items`, without the items (``run``'s hot path)."""
    send: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's T
        try:
            value, send = step[0](client, *step[2]), steps.send
        except BaseException as exc:  # the one implementation decides what it means
            value, send = exc, steps.throw


async def adrive_items(
    steps: Steps[Any], client: Callable[[], Any], result: list[Any] | None = None
) -> AsyncIterator[Any]:
    """Await ``steps`` on the asyncio client ``client()`` (made in the running loop),
    yielding each :class:`Item`'s value; the steps' result is appended to ``result``."""
    connection = client()
    value, error = None, None
    while not isinstance(step := _resume(steps, value, error), _Done):
        value, error = None, None
        if isinstance(step, Item):
            yield step.value
            continue
        try:
            value = await step[1](connection, *step[2])
        except BaseException as exc:  # the one implementation decides what it means
            error = exc
    if result is not None:
        result.append(step.value)


async def adrive(steps: Steps[T], client: Any) -> T:
    """Await ``steps`` (which yield no :class:`Item`) to their result on ``client``."""
    result: list[Any] = []
    async for _ in adrive_items(steps, lambda: client, result):
        pass
    return result[0]  # type: ignore[no-any-return]  # the generator's T


def script(name: str, keys: list[str], args: list[Any], fast: bool = False) -> Step:
    """Run Lua script ``name`` (``fast``: see :func:`motion.floor.connection.fast_command`)."""
    return (
        lambda client: scripts.run(client, name, keys, args, fast=fast),
        lambda client: scripts.arun(client, name, keys, args),
        (),
    )


def script_after(
    command: tuple[str, tuple[list[str], list[Any]]], name: str, keys: list[str], args: list[Any]
) -> Step:
    """Send ``command`` and script ``name`` in one round trip (:func:`scripts.run_after`)."""
    return (
        lambda client: scripts.run_after(client, command, name, keys, args),
        lambda client: scripts.arun_after(client, command, name, keys, args),
        (),
    )


def command(name: str, *args: Any) -> Step:
    """A Redis command by its redis-py method name, e.g. ``command("hmget", key, "seq")``."""
    return (
        lambda client: getattr(client, name)(*args),
        lambda client: getattr(client, name)(*args),
        (),
    )


def pause(seconds: float) -> Step:
    """Sleep: ``time.sleep`` from sync code, ``asyncio.sleep`` on the event loop."""
    return (lambda _: time.sleep(seconds), lambda _: asyncio.sleep(seconds), ())


def compute(func: Callable[..., Any], *args: Any) -> Step:
    """Blocking work (user code such as ``init_state``): in a thread under asyncio."""
    return (lambda _: func(*args), lambda _: asyncio.to_thread(func, *args), ())


def either(
    sync: Callable[..., Any], asynchronous: Callable[..., Awaitable[Any]], *args: Any
) -> Step:
    """A step whose two forms are given: ``sync(client, *args)`` / ``asynchronous(...)``."""
    return (sync, asynchronous, args)
