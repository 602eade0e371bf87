"""The instance handle: run serve ops inline, enqueue updates, wait for them.

A handle is cheap: no thread, no connection of its own (it borrows the process's
pooled clients), so a web server may create one per request. Constructing it
creates the instance, as in Motion (see :meth:`motion.reader.Reader.ensure`): one
round trip for an instance this process holds no copy of, none otherwise.

``run`` reads the state, runs the serve op and enqueues the update: two round
trips. When the serve op is quick and the state did not change since this
process last read it, ``run`` serves on its copy and enqueues in *one* round
trip: the enqueue script checks the copy's version is still the committed one
and, if not, enqueues nothing and returns the current state to serve on again.
"""

from __future__ import annotations

import inspect
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, overload

from motion.caller import devmode, enqueue
from motion.caller import serve as serving
from motion.caller.enqueue import Enqueuer
from motion.caller.options import HandleOptions, flow_name
from motion.caller.read import Reader
from motion.caller.serve import CacheWrite, Served, call_sync
from motion.caller.wait import Waiter
from motion.floor import keys as K
from motion.floor import motionrc, settings
from motion.floor.connection import (
    get_async_redis,
    get_redis,
    socket_timeout_option,
    translate_errors,
)
from motion.floor.errors import InstanceClosedError, InvalidInstanceIdError, UpdatesDisabledError
from motion.floor.inbox import ALL_FLOWS, WRITE_FLOW, Update
from motion.floor.inbox import target_field as _target_field
from motion.floor.props import Properties
from motion.floor.store import version_number

if TYPE_CHECKING:
    from motion.define.component import Component, Op

# fmt: off
_WORDS = (
    "amber", "azure", "brisk", "calm", "cedar", "coral", "dusky", "eager", "fern", "gentle",
    "hazel", "ivory", "jade", "keen", "lunar", "maple", "mellow", "misty", "noble", "ochre",
    "olive", "pearl", "quiet", "rapid", "rustic", "sage", "silver", "sunny", "swift", "tidal",
)
# fmt: on


def random_id() -> str:
    """A random readable instance id, e.g. ``"misty-cedar-4f1a9c"``."""
    return f"{secrets.choice(_WORDS)}-{secrets.choice(_WORDS)}-{secrets.token_hex(3)}"


class Instance:
    """A handle on one instance (e.g. one user) of a component.

    Create it by calling the component: ``handle = Summary("user-42")``. Use
    :meth:`run` / :meth:`arun` to serve and enqueue, :meth:`flush_update` to wait.
    Motion's keyword names for the flow, ``flow_key=`` and the older
    ``dataflow_key=``, are accepted too; Motion's options are in
    :class:`motion.options.HandleOptions`.
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
        params = dict(init_state_params or {})
        self._reader = Reader(component, stored, params, production, timeout=timeout)
        self._enqueuer = Enqueuer(component, stored, self._reader, timeout=timeout)
        self._closed = False
        self._waiter = Waiter(self._keys, component.name, timeout=timeout)
        self._flows_run: set[str] = set()
        if self._flush_on_exit:
            enqueue.flush_at_exit(self, self._flush_run_flows)
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
    ) -> Any:
        """Run ``flow``: its serve op inline, then enqueue its update ops.

        Args:
            flow: the flow name (``KeyError`` if the component has none such).
            props: the flow's props; the update ops see keys the serve op adds
                and ``props.serve_result``.
            ignore_cache: skip the serve-result cache read.
            force_refresh: wait for every pending update first, then serve fresh.
            flush_update: return only once this run's updates are applied.

        Returns:
            The serve op's result (a list for a generator op; ``None`` when the
            flow has no serve op).
        """
        flow = self._start(flow_name(flow, flow_key, dataflow_key), flush_update)
        properties = Properties(props or {})
        if force_refresh:
            self._settle()
        serve = self._component.serve_op(flow)
        skip_cache = ignore_cache or force_refresh
        if serve is not None and self._serves_ahead(serve, flow, skip_cache):
            ahead = self._serve_ahead(serve, flow, properties)
            if ahead is not None:
                if flush_update:
                    self._waiter.wait(flow, ahead[1], None, own=True)
                return ahead[0]
        served = Served(None)
        if serve is not None:
            served = self._serve(serve, flow, properties, skip_cache)
        properties.serve_result = served.value
        if self._component.update_ops(flow):
            seq = self._enqueue(Update(flow, dict(properties), served.value), served.cache_write)
            if flush_update:
                self._waiter.wait(flow, seq, None, own=True)
        elif served.cache_write is not None:
            name = self._keys.name
            with translate_errors(f"caching a serve result of {name}", name):
                serving.store_entry(get_redis(name, self._timeout), served.cache_write)
        return served.value

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
    ) -> Iterator[Any]:
        """Stream the items of a generator serve op; updates see the full list.

        The full list is cached as :meth:`run`'s results are (as Motion did): a
        repeated call on the same state and props streams it again;
        ``ignore_cache``, ``force_refresh`` and ``flush_update`` behave as in
        :meth:`run`.
        """
        flow = self._start(flow_name(flow, flow_key, dataflow_key), flush_update)
        properties = Properties(props or {})
        if force_refresh:
            self._settle()
        serve = self._component.serve_op(flow)
        items: list[Any] = []
        write: CacheWrite = None
        if serve is not None:
            digest = serving.digest(self._component, properties)
            skip = ignore_cache or force_refresh
            version, state, hit = self._reader.load(flow, None if skip else digest)
            where = (self._keys, flow, digest, version)
            cached = serving.cache_hit(self._component, hit, properties, where)
            if isinstance(cached, list):  # a streamed result is cached as its full list
                items = cached
                yield from cached
            else:
                out = serve.call(state.copy(), properties)
                if inspect.isasyncgen(out) or inspect.iscoroutine(out):
                    out = call_sync(serving.collect(out))
                for item in out if serving.iterable(out) else [out]:
                    items.append(item)
                    yield item
                write = serving.cache_write(
                    self._component, self._keys, flow, digest, version, items, properties
                )
        properties.serve_result = items
        if self._component.update_ops(flow):
            seq = self._enqueue(Update(flow, dict(properties), items), write)
            if flush_update:
                self._waiter.wait(flow, seq, None, own=True)
        elif write is not None:
            name = self._keys.name
            with translate_errors(f"caching a serve result of {name}", name):
                serving.store_entry(get_redis(name, self._timeout), write)

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
    ) -> Any:
        """Async twin of :meth:`run`: asyncio Redis client, sync ops in a thread."""
        flow = self._start(flow_name(flow, flow_key, dataflow_key), flush_update)
        properties = Properties(props or {})
        if force_refresh:
            await self._asettle()
        serve = self._component.serve_op(flow)
        skip_cache = ignore_cache or force_refresh
        if serve is not None and self._serves_ahead(serve, flow, skip_cache):
            ahead = await self._aserve_ahead(serve, flow, properties)
            if ahead is not None:
                if flush_update:
                    await self._waiter.await_(flow, ahead[1], None, own=True)
                return ahead[0]
        served = Served(None)
        if serve is not None:
            served = await self._aserve(serve, flow, properties, skip_cache)
        properties.serve_result = served.value
        if self._component.update_ops(flow):
            update = Update(flow, dict(properties), served.value)
            seq = await self._aenqueue(update, served.cache_write)
            if flush_update:
                await self._waiter.await_(flow, seq, None, own=True)
        elif served.cache_write is not None:
            name = self._keys.name
            with translate_errors(f"caching a serve result of {name}", name):
                client = get_async_redis(name, self._timeout)
                await serving.astore_entry(client, served.cache_write)
        return served.value

    async def agen(
        self,
        flow: str | None = None,
        props: dict[str, Any] | None = None,
        ignore_cache: bool = False,
        force_refresh: bool = False,
        flush_update: bool = False,
        *,
        flow_key: str | None = None,
        dataflow_key: str | None = None,
    ) -> AsyncIterator[Any]:
        """Async twin of :meth:`gen` for async-generator (or generator) serve ops."""
        flow = self._start(flow_name(flow, flow_key, dataflow_key), flush_update)
        properties = Properties(props or {})
        if force_refresh:
            await self._asettle()
        serve = self._component.serve_op(flow)
        items: list[Any] = []
        write: CacheWrite = None
        if serve is not None:
            digest = serving.digest(self._component, properties)
            skip = ignore_cache or force_refresh
            version, state, hit = await self._reader.aload(flow, None if skip else digest)
            where = (self._keys, flow, digest, version)
            cached = serving.cache_hit(self._component, hit, properties, where)
            if isinstance(cached, list):  # a streamed result is cached as its full list
                items = cached
                for item in cached:
                    yield item
            else:
                out = serve.call(state.copy(), properties)
                if inspect.iscoroutine(out):
                    out = await out
                if inspect.isasyncgen(out):
                    async for item in out:
                        items.append(item)
                        yield item
                else:
                    for item in out if serving.iterable(out) else [out]:
                        items.append(item)
                        yield item
                write = serving.cache_write(
                    self._component, self._keys, flow, digest, version, items, properties
                )
        properties.serve_result = items
        if self._component.update_ops(flow):
            seq = await self._aenqueue(Update(flow, dict(properties), items), write)
            if flush_update:
                await self._waiter.await_(flow, seq, None, own=True)
        elif write is not None:
            name = self._keys.name
            with translate_errors(f"caching a serve result of {name}", name):
                await serving.astore_entry(get_async_redis(name, self._timeout), write)

    # -- state ------------------------------------------------------------------
    def read_state(self, key: str, default_value: Any = None) -> Any:
        """The committed value of state ``key`` (``default_value`` if absent)."""
        self._check_open()
        return self._reader.load()[1].get(key, default_value)

    def get_version(self) -> int:
        """The committed state version (1 after creation; +1 per state change)."""
        self._check_open()
        return version_number(self._reader.load()[0])

    def write_state(
        self, state_update: dict[str, Any], latest: bool = False, timeout: float | None = None
    ) -> None:
        """Write keys into the state, in order with pending updates; returns once applied.

        ``{}`` does nothing; anything but a dict raises ``TypeError``. (``latest``
        is Motion's; writes always apply to the latest state here.) ``timeout``
        bounds the wait (:class:`FlushTimeoutError`); with none, the wait fails with
        :class:`NoWorkerError` once no worker for the component has been seen for
        ``MOTION_WORKER_GRACE_SECONDS``. The write stays queued either way.
        """
        self._check_open()
        if not isinstance(state_update, dict):
            raise TypeError(
                f"write_state takes a dict of state keys, got {type(state_update).__name__}."
            )
        if not state_update:
            return
        seq = self._enqueue(Update(WRITE_FLOW, dict(state_update)))
        self._waiter.wait(WRITE_FLOW, seq, timeout, own=True)

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
        with translate_errors("flush_update", self._keys.name):
            client = get_redis(self._keys.name, self._timeout)
            target, inc = client.hmget(self._keys.meta, _target_field(flow), "inc")
        self._waiter.wait(flow, int(target or 0), timeout, incarnation=inc)

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
        with translate_errors("flush_update", self._keys.name):
            client = get_async_redis(self._keys.name, self._timeout)
            target, inc = await client.hmget(self._keys.meta, _target_field(flow), "inc")
        await self._waiter.await_(flow, int(target or 0), timeout, incarnation=inc)

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
            enqueue.flush_at_exit(self, None)
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
        self._waiter.wait(flow, seq, timeout, own=True)

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

    def _settle(self, timeout: float | None = None) -> None:
        """Wait for every pending update (``force_refresh``); failures stay for a flush."""
        with translate_errors("force_refresh", self._keys.name):
            client = get_redis(self._keys.name, self._timeout)
            target, inc = client.hmget(self._keys.meta, "seq", "inc")
        self._waiter.wait(ALL_FLOWS, int(target or 0), timeout, report=False, incarnation=inc)

    async def _asettle(self, timeout: float | None = None) -> None:
        with translate_errors("force_refresh", self._keys.name):
            client = get_async_redis(self._keys.name, self._timeout)
            target, inc = await client.hmget(self._keys.meta, "seq", "inc")
        await self._waiter.await_(
            ALL_FLOWS, int(target or 0), timeout, report=False, incarnation=inc
        )

    # -- internals: serve ---------------------------------------------------------
    def _serve(self, op: Op, flow: str, props: Properties, skip_cache: bool) -> Served:
        digest = serving.digest(self._component, props)
        version, state, hit = self._reader.load(flow, None if skip_cache else digest)
        value = serving.cache_hit(self._component, hit, props, (self._keys, flow, digest, version))
        if value is not serving.MISS:
            return Served(value)
        out = serving.call(op, state, props)
        write = serving.cache_write(self._component, self._keys, flow, digest, version, out, props)
        return Served(out, write)

    async def _aserve(self, op: Op, flow: str, props: Properties, skip_cache: bool) -> Served:
        digest = serving.digest(self._component, props)
        version, state, hit = await self._reader.aload(flow, None if skip_cache else digest)
        value = serving.cache_hit(self._component, hit, props, (self._keys, flow, digest, version))
        if value is not serving.MISS:
            return Served(value)
        out = await serving.acall(op, state, props)
        write = serving.cache_write(self._component, self._keys, flow, digest, version, out, props)
        return Served(out, write)

    def _serves_ahead(self, op: Op, flow: str, skip_cache: bool) -> bool:
        """Whether ``run`` may serve on the local copy and enqueue in one round trip.

        That pays off when the serve op is quick (running it again on a changed
        state costs less than the round trip saved) and the state did not change
        at the last read; it needs no serve-cache read (cache off, or skipped).
        """
        return (
            bool(self._component.update_ops(flow))
            and (skip_cache or self._component.cache_ttl == 0)
            and serving.SERVE_TIMES.quick(op)
            and self._reader.steady()
        )

    def _serve_ahead(self, op: Op, flow: str, props: Properties) -> tuple[Any, int] | None:
        """Serve on the local copy and enqueue if it is current: ``(result, seq)``, or
        ``None`` when the state kept changing (the caller takes the two-trip path)."""
        original = dict(props)
        for _ in range(3):
            version, state = self._reader.local_copy()
            if state is None:
                return None
            attempt = Properties(original)
            out = serving.call(op, state, attempt)
            attempt.serve_result = out
            write = self._ahead_cache_write(flow, original, version, out, attempt)
            seq = self._enqueue(Update(flow, dict(attempt), out), write, expect=version)
            if seq is not None:
                props.update(attempt)
                props.serve_result = out
                return out, seq
        return None

    async def _aserve_ahead(self, op: Op, flow: str, props: Properties) -> tuple[Any, int] | None:
        """Async :meth:`_serve_ahead`."""
        original = dict(props)
        for _ in range(3):
            version, state = self._reader.local_copy()
            if state is None:
                return None
            attempt = Properties(original)
            out = await serving.acall(op, state, attempt)
            attempt.serve_result = out
            write = self._ahead_cache_write(flow, original, version, out, attempt)
            seq = await self._aenqueue(Update(flow, dict(attempt), out), write, expect=version)
            if seq is not None:
                props.update(attempt)
                props.serve_result = out
                return out, seq
        return None

    def _ahead_cache_write(
        self, flow: str, original: dict[str, Any], version: bytes, out: Any, after: Properties
    ) -> CacheWrite:
        digest = serving.digest(self._component, original)
        return serving.cache_write(self._component, self._keys, flow, digest, version, out, after)

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
        enqueued = self._enqueuer.enqueue(update, cache_write, expect)
        if enqueued is None:
            return None
        self._waiter.watch(*enqueued)
        return enqueued[0]

    @overload
    async def _aenqueue(self, update: Update, cache_write: CacheWrite = None) -> int: ...

    @overload
    async def _aenqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes
    ) -> int | None: ...

    async def _aenqueue(
        self, update: Update, cache_write: CacheWrite = None, *, expect: bytes = b""
    ) -> int | None:
        """Async :meth:`_enqueue`."""
        enqueued = await self._enqueuer.aenqueue(update, cache_write, expect)
        if enqueued is None:
            return None
        self._waiter.watch(*enqueued)
        return enqueued[0]


ComponentInstance = Instance  # Motion's name: from motion.caller.handle import ComponentInstance
