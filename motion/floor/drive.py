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
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, NamedTuple, TypeVar

from motion.floor import scripts

T = TypeVar("T")


class Step(NamedTuple):
    """One thing to do: ``sync(client, *args)``, or ``await asynchronous(client, *args)``."""

    sync: Callable[..., Any]
    asynchronous: Callable[..., Awaitable[Any]]
    args: tuple[Any, ...] = ()


class Item(NamedTuple):
    """Not a step: an item for the driver to hand to its caller (a streamed result)."""

    value: Any


Steps = Generator[Any, Any, T]  # yields Step (and Item, for drive_items), returns T


def drive(steps: Steps[T], client: Any) -> T:
    """Run ``steps`` to their result, each on the synchronous ``client``."""
    send: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's T
        try:
            value, send = step.sync(client, *step.args), steps.send
        except BaseException as exc:  # the one implementation decides what it means
            value, send = exc, steps.throw


async def adrive(steps: Steps[T], client: Any) -> T:
    """Run ``steps`` to their result, each awaited on the asyncio ``client``."""
    send: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]  # the generator's T
        try:
            value, send = await step.asynchronous(client, *step.args), steps.send
        except BaseException as exc:  # the one implementation decides what it means
            value, send = exc, steps.throw


def drive_items(steps: Steps[None], client: Any) -> Iterator[Any]:
    """Run ``steps`` on the synchronous ``client``, yielding each :class:`Item`'s value."""
    send: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration:
            return
        if isinstance(step, Item):
            yield step.value
            value, send = None, steps.send
            continue
        try:
            value, send = step.sync(client, *step.args), steps.send
        except BaseException as exc:  # the one implementation decides what it means
            value, send = exc, steps.throw


async def adrive_items(steps: Steps[None], client: Callable[[], Any]) -> AsyncIterator[Any]:
    """Await ``steps`` on the asyncio client ``client()`` (made in the running loop),
    yielding each :class:`Item`'s value."""
    connection = client()
    send: Callable[[Any], Any] = steps.send
    value: Any = None
    while True:
        try:
            step = send(value)
        except StopIteration:
            return
        if isinstance(step, Item):
            yield step.value
            value, send = None, steps.send
            continue
        try:
            value, send = await step.asynchronous(connection, *step.args), steps.send
        except BaseException as exc:  # the one implementation decides what it means
            value, send = exc, steps.throw


def script(name: str, keys: list[str], args: list[Any], fast: bool = False) -> Step:
    """Run Lua script ``name`` (``fast``: see :func:`motion.floor.connection.fast_command`)."""
    return Step(
        lambda client: scripts.run(client, name, keys, args, fast=fast),
        lambda client: scripts.arun(client, name, keys, args),
    )


def script_after(
    command: tuple[str, tuple[list[str], list[Any]]], name: str, keys: list[str], args: list[Any]
) -> Step:
    """Send ``command`` and script ``name`` in one round trip (:func:`scripts.run_after`)."""
    return Step(
        lambda client: scripts.run_after(client, command, name, keys, args),
        lambda client: scripts.arun_after(client, command, name, keys, args),
    )


def command(name: str, *args: Any) -> Step:
    """A Redis command by its redis-py method name, e.g. ``command("hmget", key, "seq")``."""
    return Step(
        lambda client: getattr(client, name)(*args),
        lambda client: getattr(client, name)(*args),
    )


def pause(seconds: float) -> Step:
    """Sleep: ``time.sleep`` from sync code, ``asyncio.sleep`` on the event loop."""
    return Step(lambda _: time.sleep(seconds), lambda _: asyncio.sleep(seconds))


def compute(func: Callable[..., Any], *args: Any) -> Step:
    """Blocking work (user code such as ``init_state``): in a thread under asyncio."""
    return Step(lambda _: func(*args), lambda _: asyncio.to_thread(func, *args))


def either(
    sync: Callable[..., Any], asynchronous: Callable[..., Awaitable[Any]], *args: Any
) -> Step:
    """A step whose two forms are given: ``sync(client, *args)`` / ``asynchronous(...)``."""
    return Step(sync, asynchronous, args)
