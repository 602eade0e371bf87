"""The instance handle: run serve ops inline, enqueue updates, wait for them.

A handle is cheap: no thread, no connection of its own (it borrows the process's
pooled clients), so a web server may create one per request. Constructing it
creates the instance, as in Motion (see :meth:`motion.caller.serve.Reader.ensure`):
one round trip for an instance this process holds no copy of, none otherwise.

``run`` reads the state, runs the serve op and enqueues the update: two round
trips. When the serve op is quick and the state did not change since this
process last read it, ``run`` serves on its copy and enqueues in *one* round
trip: the enqueue script checks the copy's version is still the committed one
and, if not, enqueues nothing and returns the current state to serve on again.

Each call is written once, sans-I/O (:mod:`motion.floor.drive`): ``run`` and
``arun``, ``gen`` and ``agen``, ``flush_update`` and ``aflush_update`` are front
ends of one implementation each. Caller road: uses the caller modules (serve,
enqueue, wait, host, devmode, options), the definition layer (types) and the floor.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, overload

from motion.caller import devmode, host
from motion.caller.control import FlowControl
from motion.caller.enqueue import Enqueuer
from motion.caller.letters import Letters
from motion.caller.options import HandleOptions, random_id
from motion.caller.past import PastMixin
from motion.caller.serve import CacheWrite, Call, Reader, Server
from motion.caller.wait import Waiter
from motion.floor import drive, motionrc, settings
from motion.floor import keys as K
from motion.floor.connection import (
    get_async_redis,
    get_redis,
    socket_timeout_option,
)
from motion.floor.drive import Steps
from motion.floor.errors import InstanceClosedError, InvalidInstanceIdError, UpdatesDisabledError
from motion.floor.inbox import ALL_FLOWS, Update
from motion.floor.inbox import target_field as _target_field
from motion.floor.store import version_number

if TYPE_CHECKING:
    from motion.caller.ticket import Ticket
    from motion.define.component import Component


def flow_name(flow: str | None, flow_key: str | None, dataflow_key: str | None) -> str | None:
    """The flow named positionally, by Motion's ``flow_key`` or by the older ``dataflow_key``.

    Raises:
        TypeError: two of them name different flows.
    """
    named = {k: v for k, v in (("flow", flow), ("flow_key", flow_key)) if v is not None}
    if dataflow_key is not None:
        named["dataflow_key"] = dataflow_key
    if len(set(named.values())) > 1:
        shown = ", ".join(f"{k}={v!r}" for k, v in named.items())
        raise TypeError(f"got two flows: {shown}; name the flow once.")
    return next(iter(named.values()), None)


class Instance(FlowControl, PastMixin, Letters):
    """A handle on one instance (e.g. one user) of a component.

    Create it by calling the component: ``handle = Summary("user-42")``. Use
    :meth:`run` / :meth:`arun` to serve and enqueue, :meth:`flush_update` to wait;
    ``submit`` (a ticket) and the dead letters are :class:`motion.caller.letters.Letters`.
    Motion's keyword names for the flow, ``flow_key=`` and the older
    ``dataflow_key=``, are accepted too; Motion's options are in
    :class:`motion.caller.options.HandleOptions`.
    """

    def __init__(
        self,
        component: Component,
        instance_id: str = "",
        init_state_params: dict[str, Any] | None = None,
        **motion_options: Any,
    ) -> None:
        if not isinstance(instance_id, str):
            raise InvalidInstanceIdError(f"instance_id must be a string, got {instance_id!r}.")
        if K.SEPARATOR in instance_id or instance_id.startswith(K.DEV_PREFIX):
            raise InvalidInstanceIdError(
                f"instance_id {instance_id!r} must not contain '{K.SEPARATOR}' nor start "
                f"with '{K.DEV_PREFIX}' (dev mode's namespace)."
            )
        self._options = HandleOptions.parse(motion_options)
        self._flush_on_exit = self._options.flush_on_exit
        self._config_path = self._options.config_path
        self._redis_socket_timeout = self._options.redis_socket_timeout
        settings.load_config_file(self._config_path or motionrc.DEFAULT_PATH)
        self._component = component
        self._id = instance_id or random_id()
        # dev mode: work on the copy-on-write dev instance (its keys, inbox and wake-ups)
        production = self._id if settings.get_settings().dev_mode else None
        stored = self._id if production is None else K.dev_id(self._id)
        self._keys = K.InstanceKeys.of(K.instance_name(component.name, stored))
        if production is not None:
            devmode.track(self._keys.name)
        # Motion's redis_socket_timeout= applies to this handle's own Redis calls
        timeout = socket_timeout_option(self._redis_socket_timeout)
        self._timeout = timeout
        self._where = (self._keys.name, timeout)  # the Redis client's key: name and timeout
        params = dict(init_state_params or {})
        self._reader = Reader(component, stored, params, production, timeout=timeout)
        reader = self._reader
        self._enqueuer = Enqueuer(
            component, stored, reader.create, reader.remember, timeout=timeout
        )
        self._closed = False
        self._waiter = Waiter(self._keys, component.name, timeout=timeout)
        self._server = Server(component, self._keys, self._reader, self._enqueuer, self._waiter)
        self._flows_run: set[str] = set()
        if self._flush_on_exit:
            host.flush_at_exit(self, self._flush_run_flows)
        # the instance exists once its handle does (as in Motion): created here
        # (init_state runs here), unless this process knows it exists
        self._reader.ensure()

    # -- identity ---------------------------------------------------------------
    @property
    def instance_id(self) -> str:
        """The instance id."""
        return self._id

    @property
    def instance_name(self) -> str:
        """``"<Component>__<instance_id>"``, as Motion names it (in dev mode too)."""
        return K.instance_name(self._component.name, self._id)

    @property
    def component(self) -> Component:
        """The component this handle belongs to."""
        return self._component

    # -- serving ----------------------------------------------------------------
    def run(
        self,
        flow: str | None = None,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
        after: Ticket | str | None = None,
        after_timeout: float | None = None,
        dedup_key: str | None = None,
    ) -> Any:
        """Run ``flow``: its serve op inline, then enqueue its update ops.

        Args:
            flow: the flow name (``KeyError`` if the component has none such).
            props: the flow's props; the update ops see keys the serve op adds
                and ``props.serve_result``.
            ignore_cache: skip the serve-result cache read.
            force_refresh: wait for every pending update first, then serve fresh.
            flush_update: return only once this run's updates are applied.
            after: a ticket (or its string) of this instance: serve on a state that
                includes its update, waiting up to ``after_timeout`` seconds (``None``:
                as a flush waits), then on the latest; ``props.fresh`` says which.
            dedup_key: names the update (a retry with the same key enqueues once, as
                after a :class:`ReplicationTimeoutError`, whose ``dedup_key`` it is).

        Returns:
            The serve op's result (a list for a generator op; ``None`` when the
            flow has no serve op).
        """
        named = flow_name(flow, flow_key, dataflow_key)
        call: Call = (named, props, ignore_cache, force_refresh, flush_update, after, after_timeout)
        return drive.drive(self._server.run(self._start, call, dedup_key), get_redis(*self._where))

    async def arun(
        self,
        flow: str | None = None,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
        after: Ticket | str | None = None,
        after_timeout: float | None = None,
        dedup_key: str | None = None,
    ) -> Any:
        """Async twin of :meth:`run`: asyncio Redis client, sync ops in a thread."""
        named = flow_name(flow, flow_key, dataflow_key)
        call: Call = (named, props, ignore_cache, force_refresh, flush_update, after, after_timeout)
        return await drive.adrive(self._server.run(self._start, call, dedup_key), self._aclient())

    def gen(
        self,
        flow: str | None = None,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
        after: Ticket | str | None = None,
        after_timeout: float | None = None,
    ) -> Iterator[Any]:
        """Stream the items of a generator serve op; updates see the full list.

        The full list is cached as :meth:`run`'s results are (as Motion did): a
        repeated call on the same state and props streams it again;
        ``ignore_cache``, ``force_refresh`` and ``flush_update`` behave as in
        :meth:`run`.
        """
        named = flow_name(flow, flow_key, dataflow_key)
        call: Call = (named, props, ignore_cache, force_refresh, flush_update, after, after_timeout)
        return drive.drive_items(self._server.stream(self._start, call), self._client())

    def agen(
        self,
        flow: str | None = None,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
        after: Ticket | str | None = None,
        after_timeout: float | None = None,
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`gen` for async-generator (or generator) serve ops."""
        named = flow_name(flow, flow_key, dataflow_key)
        call: Call = (named, props, ignore_cache, force_refresh, flush_update, after, after_timeout)
        return drive.adrive_items(self._server.stream(self._start, call), self._aclient)

    # -- state ------------------------------------------------------------------
    def read_state(self, key: str, default_value: Any = None, version: int | None = None) -> Any:
        """The committed value of state ``key`` (``default_value`` if absent); with
        ``version``, its value as of that kept version (:class:`VersionNotKeptError`)."""
        self._check_open()
        if version is not None:
            return self._read_past(key, default_value, version)
        return self._reader.read()[1].get(key, default_value)

    def get_version(self) -> int:
        """The committed state version (1 after creation; +1 per state change)."""
        self._check_open()
        return version_number(self._reader.read()[0])

    # -- waiting ----------------------------------------------------------------
    def flush_update(
        self,
        flow: str | None = ALL_FLOWS,
        timeout: float | None = None,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
    ) -> None:
        """Wait until every update of ``flow`` (default: all) enqueued before this
        call is applied.

        Raises:
            UpdateFailedError: naming each update of ``flow`` this caller (thread
                or asyncio task), or a caller that has ended, enqueued on this
                handle before the call that failed and was not reported to
                another call yet (see "Which call raises a failure" in docs/api.md).
            FlushTimeoutError: if ``timeout`` seconds pass first.
        """
        flow = self._flow_or_all(flow, flow_key, dataflow_key)
        call = self._flush(flow, timeout)
        drive.drive(call, self._client())

    async def aflush_update(
        self,
        flow: str | None = ALL_FLOWS,
        timeout: float | None = None,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
    ) -> None:
        """Async twin of :meth:`flush_update`."""
        flow = self._flow_or_all(flow, flow_key, dataflow_key)
        call = self._flush(flow, timeout)
        await drive.adrive(call, self._aclient())

    def _flush(self, flow: str, timeout: float | None) -> Steps[None]:
        # the last seq of ``flow`` enqueued so far, in the incarnation current now, is
        # what the flush waits for: the wait's first look reads it
        yield from self._waiter.steps(flow, 0, timeout, field=_target_field(flow))

    # -- lifecycle --------------------------------------------------------------
    def close(self, wait_for_logging_threads: bool = False) -> None:
        """Release the handle (idempotent). Enqueued updates are still applied.

        With ``flush_on_exit=True`` (Motion's option) it first waits for the updates
        of every flow this handle ran (at interpreter exit too, before the
        in-process worker stops), raising :class:`UpdateFailedError` for failures.
        ``wait_for_logging_threads`` is Motion's (it had metrics threads); nothing
        to wait for.
        """
        if self._closed:
            return
        if self._flush_on_exit:
            host.flush_at_exit(self, None)
            self._flush_run_flows()
        self._closed = True

    shutdown = close

    def _flush_run_flows(self) -> None:
        for flow in sorted(self._flows_run):
            self.flush_update(flow)

    def __enter__(self) -> Instance:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<motion instance {self.instance_name}>"

    # -- internals ----------------------------------------------------------------
    def _wait(self, flow: str, seq: int, timeout: float | None) -> None:
        """Wait until update ``seq``, enqueued by this caller, is applied; raise its
        failure (for the admin utilities and the HTTP app)."""
        drive.drive(self._waiter.steps(flow, seq, timeout, own=True), self._client())

    def _client(self) -> Any:
        return get_redis(self._keys.name, self._timeout)

    def _aclient(self) -> Any:
        return get_async_redis(self._keys.name, self._timeout)

    def _check_open(self) -> None:
        if self._closed:
            raise InstanceClosedError(f"{self.instance_name} was closed; create a new handle.")

    def _start(self, name: str | None, flush_update: bool) -> str:
        """The flow to run, checked; ``RuntimeError`` if it would enqueue on a disabled handle."""
        self._check_open()
        if name is None:
            raise TypeError("name the flow to run: run('flow', props={...}).")
        self._component.check_flow(name)
        disabled = self._options.disable_update_task and not flush_update
        if disabled and self._component.update_ops(name):
            raise UpdatesDisabledError(
                f"{self.instance_name} was made with disable_update_task=True, so it "
                f"cannot enqueue flow {name!r}'s updates: pass flush_update=True or use "
                "a handle without disable_update_task."
            )
        self._flows_run.add(name)
        return name

    def _flow_or_all(self, flow: str | None, flow_key: str | None, dataflow_key: str | None) -> str:
        if self._options.disable_update_task:
            raise UpdatesDisabledError(
                f"{self.instance_name} was made with disable_update_task=True and has no "
                "updates to flush; use a handle without disable_update_task."
            )
        name = flow_name(None if flow == ALL_FLOWS else flow, flow_key, dataflow_key)
        if name is None or name == ALL_FLOWS:
            self._check_open()
            return ALL_FLOWS
        return self._start(name, True)

    # -- internals: enqueue ---------------------------------------------------------
    @overload
    def _enqueue(self, update: Update, cache_write: CacheWrite = None) -> int: ...

    @overload
    def _enqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes
    ) -> int | None: ...

    def _enqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes = b""
    ) -> int | None:
        """Enqueue ``update``; its seq, or ``None`` if the state is no longer at ``expect``."""
        call = self._server.enqueue(update, cache_write, expect)
        return drive.drive(call, self._client())

    async def _aenqueue(self, update: Update, cache_write: CacheWrite = None) -> int:
        """Async :meth:`_enqueue` (no ``expect``)."""
        call = self._server.enqueue(update, cache_write)
        seq = await drive.adrive(call, self._aclient())
        assert seq is not None  # no expect: the enqueue always takes it
        return seq


ComponentInstance = Instance  # Motion's name: from motion.instance import ComponentInstance
