"""The one module that imports Celery: the app, and wake-ups sent by task name.

Callers send a wake-up (``motion.apply``) naming the instance; they never import
the task code, so the caller road (enqueue) and the worker road (tasks -> drain)
stay separate. The settings come from ``celeryconfig.py`` (module name in
``MOTION_CELERY_CONFIG``); the broker defaults to the state Redis.

In Flower a wake-up shows under the name ``<Component>.<flow>`` (Celery's
``shadow`` name) with ``[component, instance_id, flow, seq]`` as its arguments.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
import zlib
from collections.abc import Callable
from typing import Any

from celery import Celery, signals

from motion.connection import redis_url
from motion.settings import get_settings

APPLY_TASK = "motion.apply"
SWEEP_TASK = "motion.sweep"

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


def queue_for(instance_name: str) -> str:
    """The wake-up queue of an instance: a stable hash of its name over ``MOTION_QUEUES``."""
    queues = get_settings().queues
    return f"motion.{zlib.crc32(instance_name.encode()) % queues}"


def send_wakeup(component: str, instance_id: str, flow: str, seq: int) -> None:
    """Send ``motion.apply`` for an instance (JSON: ids only; the payload stays in Redis)."""
    name = f"{component}__{instance_id}"
    get_app().send_task(
        APPLY_TASK,
        args=[component, instance_id, flow, seq],
        queue=queue_for(name),
        shadow=f"{component}.{flow}",
        ignore_result=True,
    )


def inline_wakeups() -> bool:
    """Whether the enqueue script may push wake-ups itself (the broker is the state Redis)."""
    return get_settings().broker_url is None


_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"


#: stands for the seq in a wake-up message until the enqueue script knows it; JSON
#: escapes control characters inside strings, so it cannot occur anywhere else
SEQ_PLACEHOLDER = "\x01SEQ\x01"


def wakeup_message(component: str, instance_id: str, flow: str) -> tuple[str, bytes]:
    """``(queue, message)``: a ``motion.apply`` task message in the Redis transport's format.

    The enqueue script pushes it onto the queue (LPUSH, as kombu does) only when the
    instance needs waking, after putting the seq in place of :data:`SEQ_PLACEHOLDER`,
    so enqueue and wake-up are one atomic round trip. The message is what
    :func:`send_wakeup` would send: Celery protocol 2, JSON, ids only.
    """
    queue = queue_for(f"{component}__{instance_id}")
    task_id = str(uuid.uuid4())
    prefix = json.dumps([component, instance_id, flow])[:-1]
    args_json = f"{prefix}, {SEQ_PLACEHOLDER}]"
    embed = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
    body = f"[{args_json}, {{}}, {embed}]"
    headers: dict[str, Any] = {
        "lang": "py",
        "task": APPLY_TASK,
        "id": task_id,
        "shadow": f"{component}.{flow}",
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": task_id,
        "parent_id": None,
        "argsrepr": f"{[component, instance_id, flow]!r}"[:-1] + f", {SEQ_PLACEHOLDER}]",
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    message = {
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": task_id,
            "reply_to": None,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "utf-8",  # the body stays plain JSON text
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    # json.dumps would escape the placeholder's control characters: put them back raw
    raw = json.dumps(message).replace(json.dumps(SEQ_PLACEHOLDER)[1:-1], SEQ_PLACEHOLDER)
    return queue, raw.encode()


def on_worker_ready(callback: Callable[[], None]) -> None:
    """Run ``callback`` in a worker's main process once it is ready to consume."""

    def receiver(**_: Any) -> None:
        callback()

    signals.worker_ready.connect(receiver, weak=False)


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


def start_thread_worker(concurrency: int, pool: str = "threads") -> Callable[[], None]:
    """Start a Celery worker consuming motion's queues in a daemon thread; return a stopper."""
    from celery.worker import WorkController, state

    app = get_app()
    app.finalize()
    app.set_current()
    ready = threading.Event()

    class _Controller(WorkController):  # type: ignore[misc]  # celery is untyped
        def on_consumer_ready(self, consumer: Any) -> None:
            ready.set()

    worker = _Controller(
        app=app,
        concurrency=concurrency,
        pool=pool,
        hostname=f"motion-inprocess-{os.getpid()}@{os.uname().nodename}",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        ready_callback=None,
    )
    thread = threading.Thread(target=worker.start, name="motion-worker", daemon=True)
    thread.start()
    ready.wait(30)

    def stop() -> None:
        state.should_terminate = 0
        thread.join(10)
        state.should_terminate = None

    return stop
