"""Component definitions: state, flows and their ops. No Redis, no Celery here.

A :class:`Component` is cheap to create at import time; calling it returns an
instance handle (:class:`motion.Instance`, made by the caller road and handed in with
:func:`set_handle_factory`) that does the work. May use: the floor, and
:mod:`motion.define.definitions` and :mod:`motion.define.graph`.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from motion.define import definitions
from motion.define.definitions import registered as registered  # tools import it from here
from motion.define.graph import react_flow
from motion.define.ops import DiscardPolicy as DiscardPolicy  # users import it from here
from motion.define.ops import Op as Op
from motion.define.ops import (
    check_flow_control,
    check_same_control,
    discard_policy_of,
    flow_names,
    op_signature,
)
from motion.define.past import DEFAULT_HISTORY, kept_past
from motion.floor.errors import DefinitionError, UnknownComponentError, UnknownFlowError
from motion.floor.keys import SEPARATOR
from motion.floor.props import Params
from motion.floor.serde import DEFAULT_SERIALIZER, Serializer

F = TypeVar("F", bound=Callable[..., Any])

#: makes the handle ``Component.__call__`` returns; the caller road's Instance, handed
#: in by :mod:`motion` (this layer sits below the caller road and never imports it)
_handle_factory: Callable[..., Any] | None = None


def set_handle_factory(factory: Callable[..., Any]) -> None:
    """Hand in what ``Component(...)(instance_id)`` constructs: :mod:`motion` passes
    :class:`motion.caller.handle.Instance`."""
    global _handle_factory
    _handle_factory = factory


DEFAULT_CACHE_TTL = 86400
_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass
class _Ops:
    serve: dict[str, Op] = field(default_factory=dict)
    update: dict[str, list[Op]] = field(default_factory=dict)


class Component:
    """A self-updating prompt part: state plus flows of serve and update ops.

    Args:
        name: unique component name (letters, digits, ``_ . -``; no ``__``).
        params: read-only parameters the ops can read as ``C.params[...]``.
        cache_ttl: seconds a serve result stays cached (default 1 day; 0 turns
            caching off).
        serializer: how state values and payloads become bytes (cloudpickle).
        on_state_error: called as ``on_state_error(instance_name, error)`` on the
            worker when an instance's stored state cannot be decoded or verified (or
            ``load_state`` raises); the instance is then held, its updates pending.
        on_update_failed: called on the worker as ``on_update_failed(record)`` (a
            :class:`~motion.errors.FailedUpdate`) once per new dead letter, after its
            commit; an exception it raises is logged.
        history, retain_updates: what each instance keeps of its past: the last
            ``history`` versions (20; 0: none) and at least the last ``retain_updates``
            applied updates (0: none) for ``motion replay`` (:mod:`motion.define.past`).

    Example::

        Summary = Component("Summary")

        @Summary.init_state
        def setup():
            return {"summary": ""}

        @Summary.serve("query")
        def prompt(state, props):
            return f"Known about the user: {state['summary']}\\nQ: {props['q']}"

        @Summary.update("query")
        def remember(state, props):
            return {"summary": (state["summary"] + " " + props["q"])[-500:]}
    """

    def __init__(
        self,
        name: str,
        params: Mapping[str, Any] | None = None,
        cache_ttl: int | None = DEFAULT_CACHE_TTL,
        serializer: Serializer = DEFAULT_SERIALIZER,
        on_state_error: Callable[[str, BaseException], Any] | None = None,
        on_update_failed: Callable[[Any], Any] | None = None,
        history: int = DEFAULT_HISTORY,
        retain_updates: int = 0,
    ) -> None:
        if not isinstance(name, str) or not _NAME.match(name) or SEPARATOR in name:
            raise DefinitionError(
                f"component name {name!r} must be letters, digits, '_', '.' or '-', "
                f"without '{SEPARATOR}' (it separates component and instance id)."
            )
        if cache_ttl is None or not isinstance(cache_ttl, int) or cache_ttl < 0:
            raise DefinitionError(
                "cache_ttl must be 0 (caching disabled) or a positive number of seconds."
            )
        self.history, self.retain_updates = kept_past(history, retain_updates)
        self._name = name
        self._params = Params(name, params or {})
        self._cache_ttl = cache_ttl
        self.serializer = serializer
        self.on_state_error = on_state_error
        self.on_update_failed = on_update_failed
        self._ops = _Ops()
        self.init_state_func: Callable[..., dict[str, Any]] | None = None
        self.save_state_func: Callable[..., Any] | None = None
        self.load_state_func: Callable[..., Any] | None = None
        self._module = str(sys._getframe(1).f_globals.get("__name__", "?"))
        self._digests: tuple[str, str] | None = None  # (fingerprint, content); None: stale
        self.past_fingerprints: set[str] = set()  # each one an update may carry
        definitions.register(self)

    # -- read-only attributes ---------------------------------------------------
    @property
    def name(self) -> str:
        """The component's name."""
        return self._name

    @property
    def params(self) -> Params:
        """Read-only parameters given at definition."""
        return self._params

    @property
    def cache_ttl(self) -> int:
        """Seconds a serve result stays cached (0: off)."""
        return self._cache_ttl

    @property
    def module(self) -> str:
        """The module whose code created this component (named in worker errors)."""
        return self._module

    # -- identity of the definition -------------------------------------------
    def fingerprint(self) -> str:
        """A digest of this definition: its flows and ops, and the modules holding them.

        Each enqueued update records it, so the definition whose handle enqueued
        an update applies it, even beside another ``Component`` of the same name.
        """
        return (self._digests or self._digest())[0]

    def content(self) -> str:
        """A digest of the flows and ops alone (the same code in two modules agrees)."""
        return (self._digests or self._digest())[1]

    def _digest(self) -> tuple[str, str]:
        ops = [op for f in self.flows() for op in [self.serve_op(f), *self.update_ops(f)] if op]
        self._digests = definitions.digests(self._name, self._module, ops)
        self.past_fingerprints.add(self._digests[0])
        return self._digests

    # -- decorators -------------------------------------------------------------
    def init_state(self, func: F) -> F:
        """Decorate ``f(**init_state_params) -> dict``, run once per new instance.

        Example::

            @C.init_state
            def setup(greeting="hi"):
                return {"greeting": greeting, "history": []}
        """
        self.init_state_func = func
        return func

    def save_state(self, func: F) -> F:
        """Decorate ``f(state) -> picklable``, applied before the state is stored.

        Example::

            @C.save_state
            def save(state):
                return {"rows": state["rows"]}  # drop the open cursor
        """
        self.save_state_func = func
        return func

    def load_state(self, func: F) -> F:
        """Decorate ``f(saved) -> state``, applied after the state is read.

        Example::

            @C.load_state
            def load(saved):
                return {**saved, "cursor": sqlite3.connect(":memory:").cursor()}
        """
        self.load_state_func = func
        return func

    def serve(self, keys: str | list[str]) -> Callable[[F], F]:
        """Decorate the serve op of one or more flows: ``f(state, props) -> result``.

        The op runs inline in the caller on the last committed state. It may be a
        function, ``async def``, a generator or an async generator. One serve op per
        flow; a second one raises :class:`DefinitionError`.

        Example::

            @C.serve("ask")
            def answer(state, props):
                return llm(state["summary"], props["question"])
        """
        flows = flow_names(keys)
        for flow in flows:
            if flow in self._ops.serve:
                raise DefinitionError(
                    f"{self._name} already has a serve op for flow {flow!r} "
                    f"({self._ops.serve[flow].name}); a flow has at most one."
                )

        def decorator(func: F) -> F:
            wants_state, props_arg = op_signature(func, "serve")
            for flow in flows:
                self._ops.serve[flow] = Op(
                    flow, "serve", func, wants_state=wants_state, props_arg=props_arg
                )
            self._digests = None
            return func

        return decorator

    def update(
        self,
        keys: str | list[str],
        discard_policy: DiscardPolicy = DiscardPolicy.NONE,
        discard_after: float | None = None,
        batch: bool = False,
        retries: int | None = None,
        *,
        debounce: float | None = None,
        max_wait: float | None = None,
        on_failure: str = "skip",
    ) -> Callable[[F], F]:
        """Decorate an update op of one or more flows: ``f(state, props) -> dict | None``.

        The op runs on a worker, per instance strictly in enqueue order; the dict it
        returns is merged into the state (only those keys are written). Several
        update ops per flow run in definition order.

        Args:
            keys: a flow name or a list of them.
            discard_policy: :class:`DiscardPolicy` for stale updates.
            discard_after: the policy's N (updates) or seconds; ``None`` with NONE.
            batch: call ``f(state, props_list)`` once with every pending update of
                the flow (one LLM call for a burst instead of ten).
            retries: extra tries when the op raises (default ``MOTION_UPDATE_RETRIES``).
            debounce: run once the flow's pending updates were quiet this many seconds.
            max_wait: with ``debounce``, run at the latest this long after the oldest.
            on_failure: ``"skip"`` (record, go on) or ``"pause"`` (the flow stops at
                the failed update until it is retried or dropped).

        Example::

            @C.update("ask", discard_policy=DiscardPolicy.NUM_NEW_UPDATES, discard_after=5)
            def remember(state, props):
                return {"history": state["history"] + [props["question"]]}
        """
        flows = flow_names(keys)
        policy = discard_policy_of(discard_policy, discard_after)
        if retries is not None and (not isinstance(retries, int) or retries < 0):
            raise DefinitionError(f"retries must be a whole number >= 0, got {retries!r}.")
        check_flow_control(debounce, max_wait, on_failure)

        def decorator(func: F) -> F:
            wants_state, props_arg = op_signature(func, "update")
            if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
                raise DefinitionError(
                    f"update op {func.__name__} is a generator; return a dict instead."
                )
            for flow in flows:
                op = Op(
                    flow,
                    "update",
                    func,
                    policy,
                    discard_after,
                    batch,
                    retries,
                    wants_state,
                    props_arg,
                    debounce,
                    max_wait,
                    on_failure,
                )
                check_same_control(self._ops.update.get(flow, []), op)
                self._ops.update.setdefault(flow, []).append(op)
            self._digests = None
            return func

        return decorator

    # -- lookups ----------------------------------------------------------------
    def can_apply(self, flow: str, ops: list[str]) -> bool:
        """Whether this definition has the code for an update of ``flow`` naming ``ops``."""
        have = [op.name for op in self.update_ops(flow)]
        return bool(have) and all(name in have for name in ops)

    def serve_op(self, flow: str) -> Op | None:
        """The serve op of ``flow`` (``None`` for an update-only flow)."""
        return self._ops.serve.get(flow)

    def update_ops(self, flow: str) -> list[Op]:
        """The update ops of ``flow`` in definition order."""
        return self._ops.update.get(flow, [])

    def flow_controlled(self) -> bool:
        """Whether an update op uses flow control (debounce, on_failure="pause", or
        keep-newest, which counts pending updates at its turn): the drain then decides,
        update by update, what to hold (see :mod:`motion.worker.parking`)."""
        return any(
            op.debounce
            or op.on_failure == "pause"
            or op.discard_policy is DiscardPolicy.NUM_NEW_UPDATES
            for ops in self._ops.update.values()
            for op in ops
        )

    def flows(self) -> list[str]:
        """Every flow name, serve or update."""
        return sorted(set(self._ops.serve) | set(self._ops.update))

    def get_graph(self, x_offset_step: int = 600) -> dict[str, Any]:
        """The flows as Motion's React Flow graph: ``{"name", "nodes", "edges"}``.

        What ``motion vis FILE.py:Component`` writes for the motion-vis viewer.
        """
        order = [*self._ops.serve, *(f for f in self._ops.update if f not in self._ops.serve)]
        flows = []
        for flow in order:
            serve = self._ops.serve.get(flow)
            updates = [op.func for op in self._ops.update.get(flow, [])]
            flows.append((flow, serve.func if serve else None, updates))
        return react_flow(self._name, flows, x_offset_step)

    def check_flow(self, flow: str) -> None:
        """Raise :class:`UnknownFlowError` (a KeyError) if ``flow`` is not defined."""
        if flow not in self._ops.serve and flow not in self._ops.update:
            raise UnknownFlowError(
                f"{self._name} has no flow {flow!r}; its flows are {self.flows()}."
            )

    def __call__(
        self,
        instance_id: str = "",
        init_state_params: Mapping[str, Any] | None = None,
        **motion_options: Any,
    ) -> Any:
        """A handle (:class:`motion.Instance`) on the instance ``instance_id`` (a random
        readable id if empty).

        As in Motion, this creates the instance if it does not exist (``init_state``
        runs here; its error is raised here); a handle on an instance this process
        holds a copy of costs no round trip. It starts no thread. Motion's options
        (``logging_level``, ``update_task_type``, ``disable_update_task``,
        ``redis_socket_timeout``, ``config_path``, ``flush_on_exit``) have Motion's
        effect (see :class:`motion.caller.options.HandleOptions`); any other keyword is a
        ``TypeError`` naming the valid ones.
        """
        if _handle_factory is None:
            raise DefinitionError(
                "no instance handle was handed to motion.define.component.set_handle_factory: "
                "import motion (its package import does it) before calling a component."
            )
        return _handle_factory(self, instance_id, dict(init_state_params or {}), **motion_options)

    def __repr__(self) -> str:
        return f"Component({self._name!r}, flows={self.flows()})"


def lookup(name: str) -> Component:
    """The newest component called ``name`` in this process (what tools use);
    :class:`UnknownComponentError` if none. Updates go to their own definition
    (:func:`motion.define.definitions.resolve`)."""
    found = definitions.newest(name)
    if found is None:
        raise UnknownComponentError(
            f"this process has no component {name!r} (it knows {registered()}); start "
            f"the worker with the module that defines it: celery -A workers worker -I <module>"
        )
    return found  # type: ignore[no-any-return]  # only Components register
