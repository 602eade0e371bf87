"""Enqueue updates without the component's code: serverless functions and thin producers.

A web server calls ``Summary("user-42").run("purchase", props)``; a function that
only reacts to events (an AWS Lambda on a queue, a cron job, a webhook) often
cannot import the component's code, and need not: an update is only an inbox
entry plus a wake-up. :func:`enqueue` writes the same entry the instance handle
writes (``flow NUL sealed-payload``, the payload the serializer's dump of
``(flow, props, serve_result, enqueued_at)``, signed when ``MOTION_SIGNING_KEY``
is set), with the same Lua script and the same wake-up::

    from motion.tools.producer import enqueue

    seq = enqueue("Summary", "user-42", "purchase", {"item": "socks"})

Guarantees:

* The enqueue is one Lua script: either the update is stored whole (and will be
  applied, in order, exactly once as a state change) or not at all. An
  unreachable Redis raises :class:`~motion.errors.ConnectionFailedError`.
* Each enqueue carries a token (``dedup_key``, or a random one), and the script
  remembers the tokens of the last 30 to 60 seconds: a command re-sent after its
  reply was lost (the client retries a few times on a dropped connection) finds
  its token and returns the first seq instead of storing the update twice. Pass
  your event's id as ``dedup_key`` to make your own retries (a function invoked
  twice for one event) safe the same way.
* When the Celery broker is the state Redis (no ``MOTION_BROKER_URL``), the
  script pushes the wake-up itself: update and wake-up are one atomic round
  trip. With another broker the wake-up is sent after the script; if that
  fails, the update is still safe in the inbox, the sweeper re-sends the
  wake-up within two sweep periods, and :func:`enqueue` logs it and returns.
* A component no worker has ever registered in this Redis (a typo, or workers
  never started with its module) is refused with
  :class:`~motion.errors.UnknownComponentError` and nothing is stored: its
  updates would wait forever. Workers register a component with their first
  heartbeat, and the record never expires; the check costs one ``EXISTS`` per
  component per process (a yes is remembered).
* An instance that does not exist yet cannot be created here, since
  ``init_state`` is the component's code: :func:`enqueue` raises
  :class:`~motion.errors.InstanceNotFoundError` and stores nothing, unless the
  caller passes ``initial_state`` (stored as given; ``init_state`` is not run).

The wake-up is a Celery protocol-2 JSON message in the bytes kombu's Redis
transport stores, built here, so a cold start imports neither Celery nor kombu.
With a separate Redis broker it is one ``LPUSH`` there; with a broker that is
not Redis it goes through Celery. ``MOTION_PRODUCER_WAKEUP=celery`` forces
Celery's own producer (e.g. for a ``global_keyprefix`` transport option).

Clients are cached per URL at module level, so warm invocations of a serverless
function reuse their connection.

Tool; uses the definition layer (component), the floor (celery_app, connection, errors,
inbox, keys, scripts, serde, settings, store, wakeup).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import redis

from motion.floor import directory, heartbeat, scripts, wakeup
from motion.floor import keys as K
from motion.floor.connection import new_client, shard_url
from motion.floor.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    ReplicationTimeoutError,
    UnknownComponentError,
)
from motion.floor.inbox import (
    Update,
    check_flow_name,
    encode,
    enqueue_call,
    keyed,
    token_for,
    wake_left,
)
from motion.floor.serde import DEFAULT_SERIALIZER, Serializer, dump_stored
from motion.floor.settings import get_settings

if TYPE_CHECKING:
    from motion.define.component import Component

log = logging.getLogger("motion.producer")


_lock = threading.Lock()
_clients: dict[str, redis.Redis] = {}
_last_used: dict[int, float] = {}  # id(client) -> monotonic time of its last enqueue
_known: set[tuple[int, str]] = set()  # (id(client), component) a worker ever registered
_flows_seen: set[tuple[int, str, str]] = set()  # (id(client), component, flow) checked
#: a client idle longer than this is PINGed (and re-connected) before an enqueue
IDLE_CHECK_SECONDS = 5.0


@dataclass(frozen=True)
class _Codec:
    """Stands in for a component where :func:`motion.floor.inbox.encode` needs its serializer."""

    serializer: Serializer


def get_client(url: str | None = None) -> redis.Redis:
    """The cached client for ``url`` (default ``MOTION_REDIS_URL``); made on first use.

    Raises:
        ConfigurationError: no URL given and none configured (a producer never
            starts the embedded server: it would write to a Redis no worker reads).
    """
    url = url or get_settings().redis_url
    if not url:
        raise ConfigurationError(
            "motion.tools.producer needs a Redis URL: set MOTION_REDIS_URL (or MOTION_REDIS_HOST) "
            "or pass url=..., pointing at the Redis your workers use."
        )
    client = _clients.get(url)
    if client is None:
        with _lock:
            client = _clients.get(url)
            if client is None:
                # Commands are retried on a dropped connection (within motion's retry
                # budget): the enqueue's token makes a re-sent script find the update it
                # stored, and init creates once.
                client = new_client(url)
                _clients[url] = client
    return client


def enqueue(
    component_name: str,
    instance_id: str,
    flow: str,
    props: Mapping[str, Any] | None = None,
    serve_result: Any = None,
    *,
    initial_state: Mapping[str, Any] | None = None,
    url: str | None = None,
    serializer: Serializer | None = None,
    dedup_key: str | None = None,
) -> int:
    """Enqueue one update of ``flow`` for an instance; return its sequence number.

    Args:
        component_name: the component's name (``Component(name)``).
        instance_id: the instance id (no ``"__"``).
        flow: a flow with update ops on the workers' component.
        props: the update's props (a dict of picklable values).
        serve_result: what the update op sees as ``props.serve_result``.
        initial_state: create the instance with exactly this state if it does
            not exist (``init_state`` is not run); by default a missing instance
            raises and nothing is stored.
        url: the Redis URL (default: ``MOTION_REDIS_URL``, or the instance's shard of
            ``MOTION_REDIS_SHARDS``).
        serializer: the component's serializer, if not the default cloudpickle.
        dedup_key: a key naming this update (e.g. the triggering event's id): an
            enqueue with a key used in the last 30 seconds stores nothing and
            returns the seq the first one got.

    Raises:
        UnknownComponentError: no worker has ever registered ``component_name`` in
            this Redis (nothing was stored).
        InstanceNotFoundError: the instance does not exist and no
            ``initial_state`` was given (nothing was stored).
        ConnectionFailedError: Redis is unreachable or refused the credentials
            (nothing was stored).
    """
    _check_names(component_name, instance_id, flow)
    dedup_key, token = token_for(dedup_key)
    codec = _Codec(serializer or DEFAULT_SERIALIZER)
    ikeys = K.InstanceKeys.of(K.instance_name(component_name, instance_id))
    update = Update(flow, dict(props or {}), serve_result)
    entry = encode(cast("Component", codec), ikeys.name, update)
    mode = _wakeup_mode()
    push, ready = None, None
    if mode == "inline":  # the ready list, or one message per update (as a handle does)
        push, ready = wakeup.to_push(component_name, instance_id, flow)
    # the token makes the script safe to re-send: a retry after a lost reply enqueues once
    keys, args = enqueue_call(ikeys, entry, flow, push, token=token, ready=ready)
    shards = get_settings().redis_shards
    if url is None and shards:  # the instance's shard, as every caller routes it
        url = shard_url(ikeys.name, shards)
    client = get_client(url)
    action = f"enqueueing {flow!r} for {ikeys.name}"
    now = time.monotonic()
    if now - _last_used.get(id(client), 0.0) > IDLE_CHECK_SECONDS:
        with _translate(client, action, stored="nothing was enqueued"):
            _ready(client)
    _last_used[id(client)] = now
    if (id(client), component_name) not in _known:
        with _translate(client, action, stored="nothing was enqueued"):
            _check_registered(client, component_name)
    if (id(client), component_name, flow) not in _flows_seen:
        with _translate(client, action, stored="nothing was enqueued"):
            _check_flow(client, component_name, flow)
    stored = "the update may or may not be stored: retry with the same dedup_key"
    try:
        with _translate(client, action, stored=stored), keyed(dedup_key):
            reply = directory.run_enqueue(client, ikeys.name, keys, args)
            if reply[0] == 0:
                if initial_state is None:
                    raise InstanceNotFoundError(
                        f"{ikeys.name} does not exist, so nothing was enqueued: a producer "
                        f"without the component's code cannot run its init_state. Create the "
                        f"instance first (e.g. {component_name}({instance_id!r}) where the "
                        f"code is), or pass initial_state={{...}} to create it with that state."
                    )
                _create(client, codec, component_name, ikeys, initial_state)
                reply = directory.run_enqueue(client, ikeys.name, keys, args)
    except ReplicationTimeoutError as exc:  # stored on the primary: its wake-up goes out too
        if wake_left(exc.reply):
            _wake(mode, component_name, instance_id, flow, int(exc.reply[0]))
        raise
    if wake_left(reply):  # the script could not push it (another broker): send it now
        _wake(mode, component_name, instance_id, flow, int(reply[0]))
    return int(reply[0])


def _wake(mode: str, component: str, instance_id: str, flow: str, seq: int) -> None:
    """:func:`_send`; a send that fails is logged: the sweeper re-sends the wake-up."""
    try:
        _send(mode, component, instance_id, flow, seq)
    except Exception as exc:  # the update is durable; the sweeper re-sends the wake-up
        log.warning(
            "wake-up for %s #%d not sent (%s); the sweeper will re-send it",
            K.instance_name(component, instance_id),
            seq,
            exc,
        )


def _check_registered(client: redis.Redis, component: str) -> None:
    """Refuse a component no worker ever registered: its updates would wait forever."""
    if not heartbeat.ever_registered(client, component):
        raise UnknownComponentError(
            f"no worker has ever registered component {component!r} in this Redis, so "
            f"nothing was enqueued (its updates would wait forever). Check the name (it is "
            f"Component(name) in your code, case-sensitive), and start a worker that imports "
            f"the module defining it: celery -A workers worker -I <module>."
        )
    _known.add((id(client), component))


def _check_flow(client: redis.Redis, component: str, flow: str) -> None:
    """Warn (once per process) about a flow no worker announced update ops for: it is
    accepted, and waits for a worker with that code (a rolling deploy's new flow)."""
    announced = client.smembers(K.flows(component))
    if announced and flow.encode() not in announced and flow not in announced:
        log.warning(
            "no worker has announced flow %r of %s (they announce %s); its updates are "
            "stored and wait for a worker whose code has it. Check the name if no deploy "
            "is adding it.",
            flow,
            component,
            ", ".join(sorted(f.decode() if isinstance(f, bytes) else f for f in announced)),
        )
    _flows_seen.add((id(client), component, flow))


def _wakeup_mode() -> str:
    """``inline`` (the enqueue script pushes it), ``redis`` (LPUSH after) or ``celery``."""
    mode = os.environ.get("MOTION_PRODUCER_WAKEUP", "").strip().lower() or "auto"
    if mode not in ("auto", "redis", "celery"):
        raise ConfigurationError(f"MOTION_PRODUCER_WAKEUP={mode!r}: use auto, redis or celery.")
    broker = get_settings().broker_url
    if mode == "celery":
        return "celery"
    if broker is None:
        return "inline"  # the state Redis is the broker: one atomic round trip
    if mode == "redis" or broker.startswith(("redis://", "rediss://", "unix://")):
        return "redis"
    return "celery"


def _send(mode: str, component: str, instance_id: str, flow: str, seq: int) -> None:
    """Send ``motion.apply`` after the enqueue: one LPUSH on a Redis broker, or via Celery."""
    if mode == "celery":
        from motion.floor.celery_app import send_wakeup as celery_send

        celery_send(component, instance_id, flow, seq)
        return
    broker_url = get_settings().broker_url
    queue, message = wakeup.message(component, instance_id, flow)
    get_client(broker_url).lpush(queue, wakeup.fill_seq(message, seq))


def reset() -> None:
    """Close and forget the cached clients (tests, or after a fork)."""
    with _lock:
        for client in _clients.values():
            client.close()
        _clients.clear()
        _last_used.clear()
        _known.clear()
        _flows_seen.clear()


def _check_names(component: str, instance_id: str, flow: str) -> None:
    if not component or K.SEPARATOR in component:
        raise InvalidInstanceIdError(
            f"component name {component!r} must be non-empty and must not contain '{K.SEPARATOR}'."
        )
    if not instance_id or K.SEPARATOR in instance_id:
        raise InvalidInstanceIdError(
            f"instance_id {instance_id!r} must be non-empty and must not contain '{K.SEPARATOR}'."
        )
    check_flow_name(flow)


def _create(
    client: redis.Redis,
    codec: _Codec,
    component: str,
    ikeys: K.InstanceKeys,
    state: Mapping[str, Any],
) -> None:
    """Create the instance with ``state`` (stored key by key) unless it exists already."""
    from motion.floor.store import new_incarnation, now_ms, value_binding

    limit = get_settings().max_value_bytes
    incarnation = new_incarnation()
    fields: list[Any] = []
    for key, value in state.items():
        if not isinstance(key, str):
            raise TypeError(f"initial_state keys must be strings; got {key!r}.")
        what = f"state key {key!r} of {ikeys.name}"
        bind = value_binding(ikeys.name, key, incarnation)
        fields += [key, dump_stored(codec.serializer, what, value, limit, bind)]
    script_keys = [ikeys.meta, ikeys.state, K.part(K.COMPONENTS, ikeys.name), ikeys.claim]
    script_keys.append(K.names(component, ikeys.name))
    scripts.run(client, "init", script_keys, [component, now_ms(), incarnation, 1, *fields])
    directory.note_once(client, script_keys[2])  # its part of the component set, once


def _ready(client: redis.Redis, attempts: int = 3) -> None:
    """PING (safe to repeat) so a connection that died while the function slept is replaced.

    Commands are not retried automatically, so without this a serverless function
    thawed after minutes would fail its first enqueue on a connection the server
    or a load balancer closed meanwhile.
    """
    for attempt in range(attempts):
        try:
            client.ping()
            return
        except (redis.ConnectionError, redis.TimeoutError):
            if attempt == attempts - 1:
                raise


@contextlib.contextmanager
def _translate(client: redis.Redis, action: str, stored: str) -> Iterator[None]:
    """Turn redis-py connection and auth errors into :class:`ConnectionFailedError`."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError) as exc:
        pool = getattr(client, "connection_pool", None)  # none on a cluster client
        where = _describe(pool.connection_kwargs) if pool else "the Redis Cluster"
        refused = isinstance(exc, redis.AuthenticationError) or any(
            code in str(exc) for code in ("NOAUTH", "NOPERM", "WRONGPASS")
        )
        if refused:
            raise ConnectionFailedError(
                f"{action}: Redis at {where} refused the credentials ({exc}; {stored}); check "
                f"the user and password in MOTION_REDIS_URL."
            ) from exc
        if isinstance(exc, redis.ResponseError):
            raise
        raise ConnectionFailedError(
            f"{action}: cannot reach Redis at {where} ({exc}; {stored}). Is it running, and "
            f"is MOTION_REDIS_URL right?"
        ) from exc


def _describe(kwargs: Mapping[str, Any]) -> str:
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    return f"{kwargs.get('host', '?')}:{kwargs.get('port', '?')}/{kwargs.get('db', 0)}"
