"""Worker presence: workers announce the components they can apply; waits check.

Every worker process that applies updates (a ``celery worker``'s main process, the
in-process worker) runs a :class:`Heartbeat`: every ``MOTION_HEARTBEAT_SECONDS`` it
records, per component whose code it has, that it is alive (``motion:workers:{C}``,
scored on Redis' clock, so a skewed host clock does not matter). A caller that
waits with no timeout asks :func:`last_seen` and, once no such worker has been
seen for ``MOTION_WORKER_GRACE_SECONDS``, gets an error naming the fix instead of
blocking forever. Each beat also records that the component was ever registered
(``motion:registered:{C}``, never expiring): the producer refuses a component no
worker ever announced (:func:`ever_registered`).

Floor module: keys, scripts, connection and settings only; both roads use it.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

import redis
import redis.asyncio

from motion.floor import keys as K
from motion.floor import scripts
from motion.floor.connection import is_cluster
from motion.floor.settings import get_settings

log = logging.getLogger("motion.heartbeat")

#: a silent worker is forgotten after this many grace periods (bounds the set)
FORGET_AFTER = 100


def worker_id() -> str:
    """This process's name in the presence sets: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _forget_ms() -> int:
    return int(get_settings().worker_grace_seconds * FORGET_AFTER * 1000)


def beat(
    client: redis.Redis,
    components: list[str],
    goodbye: bool = False,
    flows: Callable[[str], list[str]] | None = None,
) -> None:
    """Announce (or, with ``goodbye``, withdraw) this process for ``components``, and the
    flows with update ops it has for each (``flows``: ``motion:flows:{C}``)."""
    flag = "1" if goodbye else "0"
    if not components:
        return
    pipe = client.pipeline(transaction=False)
    if flows is not None and not goodbye:
        for component in components:
            if names := flows(component):
                pipe.sadd(K.flows(component), *names)
    if is_cluster(client):  # a cluster pipeline refuses scripts: one call per component
        pipe.execute()
        for component in components:
            names = [K.workers(component), K.registered(component)]
            scripts.run(client, "heartbeat", names, [worker_id(), _forget_ms(), flag])
        return
    script = scripts.get("heartbeat")
    for component in components:
        keys = (K.workers(component), K.registered(component))
        pipe.evalsha(script.sha, 2, *keys, worker_id(), _forget_ms(), flag)
    replies = pipe.execute(raise_on_error=False)
    if any(isinstance(r, redis.exceptions.NoScriptError) for r in replies):
        for component in components:
            args = [worker_id(), _forget_ms(), flag]
            names = [K.workers(component), K.registered(component)]
            scripts.run(client, "heartbeat", names, args)
    else:
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply


def ever_registered(client: redis.Redis, component: str) -> bool:
    """Whether a worker able to apply ``component``'s updates ever announced itself here."""
    return bool(client.exists(K.registered(component)))


def last_seen(client: redis.Redis, component: str) -> float | None:
    """Seconds since a worker able to apply ``component`` announced itself (None: never)."""
    age = int(scripts.run(client, "alive", [K.workers(component)], []))
    return None if age < 0 else age / 1000


async def alast_seen(client: redis.asyncio.Redis, component: str) -> float | None:
    """Async :func:`last_seen`."""
    age = int(await scripts.arun(client, "alive", [K.workers(component)], []))
    return None if age < 0 else age / 1000


class Heartbeat:
    """A daemon thread announcing this process for the components ``components()`` names."""

    def __init__(
        self,
        client: Callable[[], redis.Redis],
        components: Callable[[], list[str]],
        flows: Callable[[str], list[str]] | None = None,
    ):
        self._client = client
        self._components = components
        self._flows = flows
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Announce now (so a caller waiting right after sees this worker), then periodically."""
        self._beat()
        self._thread = threading.Thread(target=self._run, name="motion-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop announcing and withdraw this process (a stopped worker is not counted)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        try:
            beat(self._client(), self._components(), goodbye=True)
        except redis.RedisError as exc:  # Redis gone at shutdown: the entry ages out
            log.debug("heartbeat goodbye not sent (%s)", exc)

    def _run(self) -> None:
        while not self._stop.wait(get_settings().heartbeat_seconds):
            self._beat()

    def _beat(self) -> None:
        try:
            beat(self._client(), self._components(), flows=self._flows)
        except redis.RedisError as exc:  # transient: the next beat retries
            log.warning("worker heartbeat not recorded (%s)", exc)
