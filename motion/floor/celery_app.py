"""The one module that imports Celery: the app, and wake-ups sent by task name.

Callers send a wake-up (``motion.apply``) naming the instance; they never import
the task code, so the caller road (enqueue) and the worker road (tasks -> drain)
stay separate. The settings come from ``celeryconfig.py`` (module name in
``MOTION_CELERY_CONFIG``); the broker defaults to the state Redis.

In Flower a wake-up shows under the name ``<Component>.updates`` (Celery's
``shadow`` name) with ``[component, instance_id, flow, seq]`` as its arguments
(the flow and seq of the update that woke it).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from celery import Celery, signals
from kombu.entity import Queue

from motion.floor.connection import redis_url
from motion.floor.errors import DefinitionError
from motion.floor.settings import get_settings
from motion.floor.wakeup import APPLY_TASK, flow_label, queue_for, queues_of, task_label

_lock = threading.Lock()
_app: Celery | None = None


def get_app() -> Celery:
    """The configured Celery app of this process (created on first use)."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                app = Celery("motion")
                app.config_from_object(os.environ.get("MOTION_CELERY_CONFIG", "celeryconfig"))
                settings = get_settings()
                app.conf.broker_url = settings.broker_url or redis_url()
                if app.conf.broker_url.startswith("rediss://") and not app.conf.broker_use_ssl:
                    # Flower reads TLS options only from here; kombu alone would not check
                    # the server's certificate unless the URL says so.
                    app.conf.broker_use_ssl = tls_options(app.conf.broker_url)
                _app = app
    return _app


def tls_options(url: str) -> dict[str, Any]:
    """``broker_use_ssl`` from a ``rediss://`` URL's ``ssl_*`` parameters.

    The certificate is checked unless the URL says ``ssl_cert_reqs=none``, as
    redis-py does for the state client.
    """
    import ssl
    from urllib.parse import parse_qsl, urlsplit

    reqs = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
    options: dict[str, Any] = {"ssl_cert_reqs": ssl.CERT_REQUIRED}
    for key, value in parse_qsl(urlsplit(url).query):
        if key == "ssl_cert_reqs":
            options[key] = reqs.get(value.lower().removeprefix("cert_"), ssl.CERT_REQUIRED)
        elif key == "ssl_check_hostname":
            options[key] = value.lower() not in ("false", "0", "no")
        elif key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            options[key] = value
    return options


def send_wakeup(component: str, instance_id: str, flow: str, seq: int) -> None:
    """Send ``motion.apply`` for an instance (JSON: ids only; the payload stays in Redis)."""
    get_app().send_task(
        APPLY_TASK,
        args=[component, instance_id, flow_label(flow), seq],
        queue=task_queue(queue_for(component, instance_id)),
        shadow=task_label(component),
        ignore_result=True,
    )


def task_queue(name: str) -> Queue:
    """The kombu queue called ``name``, as motion declares every queue (default exchange)."""
    return Queue(name, routing_key=name)  # type: ignore[no-untyped-call]  # kombu is untyped


def consume_component_queues(app: Celery, components: Callable[[], Iterable[str]]) -> None:
    """Have workers started with ``celery worker`` consume their components' queues.

    The queues are added once the worker has imported its ``-I`` modules (Celery's
    ``celeryd_after_setup`` signal), so they follow the code the worker has:
    ``components()`` names them (the worker road passes the registry's). If it raises
    :class:`DefinitionError` (one component defined twice, differently:
    :func:`motion.define.definitions.check_unique`), the worker exits instead: it
    could not tell which applies.
    """

    def receiver(instance: Any, **_: Any) -> None:
        try:
            names = list(components())
        except DefinitionError as exc:
            # Celery logs and ignores a receiver's Exception; SystemExit stops the worker
            raise SystemExit(f"motion: worker not started: {exc}") from exc
        for component in names:
            for name in queues_of(component):
                instance.app.amqp.queues.select_add(task_queue(name))

    signals.celeryd_after_setup.connect(receiver, weak=False)


def on_worker_setup(callback: Callable[[str, int], None]) -> None:
    """Call ``callback(pool, concurrency)`` once a ``celery worker`` is set up (``pool``
    is the name of Celery's pool: ``prefork``, ``threads``, ``gevent``, ``solo`` ...)."""

    def receiver(instance: Any, **_: Any) -> None:
        pool = getattr(instance, "pool_cls", None)
        module = getattr(pool, "__module__", "") or str(pool or "")
        name = module.rpartition(".")[2]
        names = {"thread": "threads", "asynpool": "prefork", "prefork": "prefork"}
        callback(names.get(name, name), int(getattr(instance, "concurrency", 0) or 0))

    signals.celeryd_after_setup.connect(receiver, weak=False)


def on_worker_ready(callback: Callable[[], None]) -> None:
    """Run ``callback`` in a worker's main process once it is ready to consume."""

    def receiver(**_: Any) -> None:
        callback()

    signals.worker_ready.connect(receiver, weak=False)


def terminating() -> bool:
    """Whether this worker process is in a cold shutdown (Celery cancels running tasks)."""
    from celery.worker import state

    return state.should_terminate is not None


def on_worker_shutting_down(callback: Callable[[], None]) -> None:
    """Run ``callback`` when a worker begins to shut down (warm or cold: the signal
    received, before its running tasks end)."""

    def receiver(**_: Any) -> None:
        callback()

    signals.worker_shutting_down.connect(receiver, weak=False)


def on_worker_shutdown(callback: Callable[[], None]) -> None:
    """Run ``callback`` when a worker shuts down."""

    def receiver(**_: Any) -> None:
        callback()

    signals.worker_shutdown.connect(receiver, weak=False)


def reset() -> None:
    """Forget the app (tests that change the Redis URL)."""
    global _app
    with _lock:
        _app = None


class ThreadWorker:
    """A Celery worker consuming motion's queues in a daemon thread of this process."""

    def __init__(self, concurrency: int, components: Iterable[str], pool: str = "threads") -> None:
        from celery.worker import WorkController

        app = get_app()
        app.finalize()
        app.set_current()
        for component in components:  # consumed from the start
            for name in queues_of(component):
                app.amqp.queues.select_add(task_queue(name))
        ready = threading.Event()

        class _Controller(WorkController):  # type: ignore[misc]  # celery is untyped
            def on_consumer_ready(self, consumer: Any) -> None:
                ready.set()

        self._worker = _Controller(
            app=app,
            concurrency=concurrency,
            pool=pool,
            hostname=f"motion-inprocess-{os.getpid()}@{os.uname().nodename}",
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            ready_callback=None,
        )
        self._thread = threading.Thread(
            target=self._worker.start, name="motion-worker", daemon=True
        )
        self._thread.start()
        ready.wait(30)

    def consume(self, component: str) -> None:
        """Also consume ``component``'s queues (a component defined after the start)."""
        app = get_app()
        consumer = self._worker.consumer
        for name in queues_of(component):
            if name not in app.amqp.queues:
                app.amqp.queues.select_add(task_queue(name))
            hub = getattr(self._worker, "hub", None)
            if hub is not None:  # the worker's own thread runs the event loop
                hub.call_soon(consumer.add_task_queue, name)
            else:
                consumer.add_task_queue(name)

    def stop(self, wait: float = 10.0) -> None:
        """Stop the worker and wait (up to ``wait`` s) for its thread: the tasks
        under way finish first (Celery's warm shutdown)."""
        from celery.worker import state

        deadline = time.monotonic() + wait
        state.should_terminate = 0
        self._thread.join(wait)
        state.should_terminate = None
        # the controller may be done before its pool's threads: wait for the tasks too
        executor = getattr(getattr(self._worker, "pool", None), "executor", None)
        if executor is None:
            return
        executor.shutdown(wait=False, cancel_futures=True)  # idle threads leave at once
        for thread in list(getattr(executor, "_threads", ())):
            thread.join(max(0.0, deadline - time.monotonic()))
