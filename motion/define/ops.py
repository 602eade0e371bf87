"""Ops: what one serve or update op is, and running it to completion.

:class:`Op` is an op as the engine sees it (its flow, function, discard policy...);
the decorators of :class:`motion.define.component.Component` make them. A serve op
may be a plain function, a generator, a coroutine or an async generator; ``run``
wants its whole result, ``gen`` and ``agen`` its items one by one. Calls are timed:
the time each serve op usually takes decides how ``run`` reads the state (see
:meth:`ServeTimes.quick`).

Definition layer: no Redis. Uses the floor's error tree only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import inspect
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from motion.floor.errors import DefinitionError
from motion.floor.inbox import check_flow_name

if TYPE_CHECKING:
    from motion.floor.props import Properties, State


class DiscardPolicy(enum.IntEnum):
    """Which pending updates an update op may skip to stay fresh (as in Motion)."""

    NONE = 0  #: run every update
    NUM_NEW_UPDATES = 1  #: run only the newest ``discard_after`` pending updates
    SECONDS = 2  #: skip an update older than ``discard_after`` seconds when its turn comes


@dataclass(frozen=True)
class Op:
    """One serve or update op as the engine sees it."""

    flow: str
    kind: str  # "serve" | "update"
    func: Callable[..., Any]
    discard_policy: DiscardPolicy = DiscardPolicy.NONE
    discard_after: float | None = None
    batch: bool = False
    retries: int | None = None
    wants_state: bool = True
    props_arg: str | None = "props"
    #: flow control (see :func:`flow_control`): seconds of quiet before the op runs,
    #: the most seconds the oldest pending update waits, and what a failure does
    debounce: float | None = None
    max_wait: float | None = None
    on_failure: str = "skip"

    @property
    def name(self) -> str:
        """The op's function name (used in failure records and logs)."""
        return getattr(self.func, "__qualname__", repr(self.func))

    @property
    def is_async(self) -> bool:
        """True for ``async def`` ops and async generators."""
        return inspect.iscoroutinefunction(self.func) or inspect.isasyncgenfunction(self.func)

    def call(self, state: Any, props: Any) -> Any:
        """Call the function with only the parameters it declares."""
        kwargs: dict[str, Any] = {}
        if self.wants_state:
            kwargs["state"] = state
        if self.props_arg is not None:
            kwargs[self.props_arg] = props
        return self.func(**kwargs)


def flow_names(keys: str | list[str] | tuple[str, ...]) -> list[str]:
    """The flow names a decorator was given, checked."""
    flows = [keys] if isinstance(keys, str) else list(keys)
    if not flows:
        raise DefinitionError("give at least one flow name, e.g. @C.serve('summarize').")
    return [check_flow_name(flow) for flow in flows]


def op_signature(func: Callable[..., Any], kind: str) -> tuple[bool, str | None]:
    """Whether an op function takes ``state``, and the name it takes props by."""
    if not callable(func):
        raise DefinitionError(f"@{kind} decorates a function, got {func!r}.")
    params = inspect.signature(func).parameters
    allowed = {"state", "props", "props_list"}
    extra = [p for p, v in params.items() if p not in allowed and v.default is v.empty]
    if extra:
        raise DefinitionError(
            f"{kind} op {func.__name__} takes {extra}: an op may only take `state` and "
            f"`props` (each optional), e.g. def {func.__name__}(state, props)."
        )
    props_arg = "props_list" if "props_list" in params else "props" if "props" in params else None
    return "state" in params, props_arg


def discard_policy_of(policy: DiscardPolicy | int, after: float | None) -> DiscardPolicy:
    """The checked discard policy of an update op."""
    try:
        policy = DiscardPolicy(policy)
    except ValueError:
        raise DefinitionError(
            f"discard_policy must be a DiscardPolicy (NONE, NUM_NEW_UPDATES, SECONDS), "
            f"got {policy!r}."
        ) from None
    if policy is DiscardPolicy.NONE and after is not None:
        raise DefinitionError("discard_after must be None when discard_policy is NONE.")
    if policy is not DiscardPolicy.NONE and (
        after is None or isinstance(after, bool) or not isinstance(after, int | float) or after <= 0
    ):
        raise DefinitionError(
            f"discard_policy {policy.name} needs discard_after > 0 (got {after!r})."
        )
    return policy


ON_FAILURE = ("skip", "pause")


def check_flow_control(debounce: Any, max_wait: Any, on_failure: Any) -> None:
    """Raise :class:`DefinitionError` unless an update op's flow-control options are valid."""
    for name, value in (("debounce", debounce), ("max_wait", max_wait)):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int | float) or value <= 0
        ):
            raise DefinitionError(f"{name} must be a number of seconds > 0 or None, got {value!r}.")
    if max_wait is not None and debounce is None:
        raise DefinitionError("max_wait bounds a debounce: give debounce= too.")
    if on_failure not in ON_FAILURE:
        raise DefinitionError(
            f"on_failure must be 'skip' (record the failure, go on) or 'pause' (hold the "
            f"flow at the failed update until it is retried or dropped), got {on_failure!r}."
        )


def check_same_control(existing: list[Op], new: Op) -> None:
    """Raise :class:`DefinitionError` if ``new`` and an update op already defined for its
    flow disagree on debounce / max_wait: the flow is the unit a debounce holds."""
    for op in existing:
        if (op.debounce, op.max_wait) != (new.debounce, new.max_wait):
            raise DefinitionError(
                f"update ops {op.name} and {new.name} of flow {new.flow!r} disagree on "
                f"debounce/max_wait ({op.debounce}/{op.max_wait} vs {new.debounce}/"
                f"{new.max_wait}); a debounce holds the whole flow: give both the same."
            )


class ServeTimes:
    """How long each serve op usually takes (a moving average), to pick the serve path."""

    #: ops quicker than this may run again on a changed state at less cost than the
    #: round trip that serving ahead saves
    QUICK_SECONDS = 0.001

    def __init__(self) -> None:
        self._seconds: dict[int, float] = {}

    def record(self, op: Op, seconds: float) -> None:
        """Fold one run of ``op`` into its average."""
        key = id(op)
        previous = self._seconds.get(key)
        self._seconds[key] = seconds if previous is None else 0.8 * previous + 0.2 * seconds

    def quick(self, op: Op) -> bool:
        """Whether ``op`` is known to be quick (an op not run yet is not)."""
        return self._seconds.get(id(op), 1.0) < self.QUICK_SECONDS


#: the process's serve-op timings
SERVE_TIMES = ServeTimes()


def call(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion in this thread (on a copy of ``state``), timing it."""
    started = time.perf_counter()
    out = _call_and_list(op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


async def acall(op: Op, state: State, props: Properties) -> Any:
    """Run a serve op to completion without blocking the event loop, timing it."""
    started = time.perf_counter()
    if op.is_async:
        out = await collect(op.call(state.copy(), props))
    else:  # a sync op must not block the event loop
        out = await asyncio.to_thread(_call_and_list, op, state.copy(), props)
    SERVE_TIMES.record(op, time.perf_counter() - started)
    return out


def serve_step(_: Any, op: Op, state: State, props: Properties) -> Any:
    """:func:`call` as a step's sync form (:mod:`motion.floor.drive`)."""
    return call(op, state, props)


async def aserve_step(_: Any, op: Op, state: State, props: Properties) -> Any:
    """:func:`acall` as a step's async form (:mod:`motion.floor.drive`)."""
    return await acall(op, state, props)


def iterable(value: Any) -> bool:
    """Whether a serve op's output is a sequence of items to stream."""
    return inspect.isgenerator(value) or isinstance(value, list | tuple)


async def collect(value: Any) -> Any:
    """Await a coroutine and drain an (async) generator into a list."""
    if inspect.iscoroutine(value):
        value = await value
    if inspect.isasyncgen(value):
        return [item async for item in value]
    if inspect.isgenerator(value):
        return list(value)
    return value


def _call_and_list(op: Op, state: State, props: Properties) -> Any:
    out = op.call(state, props)
    if inspect.iscoroutine(out) or inspect.isasyncgen(out):
        return call_sync(collect(out))
    return list(out) if inspect.isgenerator(out) else out


def open_items(_: Any, op: Op, state: State, props: Properties) -> Iterator[Any]:
    """Call a streaming serve op from sync code: an iterator over its items."""
    out = op.call(state.copy(), props)
    if inspect.isasyncgen(out) or inspect.iscoroutine(out):
        out = call_sync(collect(out))
    return iter(out if iterable(out) else [out])


async def aopen_items(_: Any, op: Op, state: State, props: Properties) -> Any:
    """Call a streaming serve op on the event loop: an (async) iterator over its items."""
    out = op.call(state.copy(), props)
    if inspect.iscoroutine(out):
        out = await out
    if inspect.isasyncgen(out):
        return out
    return iter(out if iterable(out) else [out])


def next_item(_: Any, items: Iterator[Any], end: Any) -> Any:
    """The next item of :func:`open_items`' iterator, or ``end``."""
    return next(items, end)


async def anext_item(_: Any, items: Any, end: Any) -> Any:
    """The next item of :func:`aopen_items`' iterator, or ``end``."""
    if inspect.isasyncgen(items):
        return await anext(items, end)
    return next(items, end)


def call_sync(coro: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine from sync code, even when this thread already runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
