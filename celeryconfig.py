"""Celery settings of motion's callers and workers; each line says why.

Loaded by :func:`motion.floor.celery_app.get_app` (override the module with
``MOTION_CELERY_CONFIG``). The broker URL is filled in at first use: the state
Redis (``MOTION_REDIS_URL``, or the embedded server), unless ``MOTION_BROKER_URL``
names another.
"""

from kombu import Queue

from motion.floor.settings import get_settings
from motion.floor.wakeup import CONTROL_QUEUE

_settings = get_settings()

# Task messages carry only ids, so JSON is enough, and a broker message can never
# make a worker unpickle anything.
task_serializer = "json"
accept_content = ["json"]
result_serializer = "json"
event_serializer = "json"

# The result of an update is the committed state in Redis: no result backend.
task_ignore_result = True
result_backend = None

# Wake-ups go to their component's queues (motion.<Component>.<n>, by a hash of the
# instance name); a worker adds the queues of the components its -I modules define,
# so a wake-up never reaches a worker without the code. Every worker also consumes
# the "motion" queue, where Celery beat sends the sweeper task.
task_queues = [Queue(CONTROL_QUEUE, routing_key=CONTROL_QUEUE)]
task_default_queue = CONTROL_QUEUE
task_create_missing_queues = False

# Acknowledge after the drain, so a wake-up whose worker died is delivered again
# (the lease and seq checks make a second delivery harmless; the sweeper is the
# faster net).
task_acks_late = True
task_reject_on_worker_lost = True

# A wake-up is tiny and a drain may run long (an LLM call): prefetch few, so a slow
# drain does not sit on wake-ups another worker could take.
worker_prefetch_multiplier = 4

# Broker transport: on Redis, re-deliver unacknowledged wake-ups after 5 minutes (not
# Celery's 1 hour), keep connections alive and checked.
broker_transport_options = {
    "visibility_timeout": 300,
    "socket_keepalive": True,
    "health_check_interval": 30,
    "retry_on_timeout": True,
    # a hung broker fails a wake-up's send (the sweeper re-sends it) instead of blocking
    "socket_timeout": _settings.redis_socket_timeout,
    "socket_connect_timeout": _settings.redis_connect_timeout,
    # the same for RabbitMQ (amqp://; the Redis transport ignores these two): a send
    # waiting for a queue's declare-ok from a frozen broker would otherwise never return
    "read_timeout": _settings.redis_socket_timeout,
    "write_timeout": _settings.redis_socket_timeout,
}
broker_connection_timeout = _settings.redis_connect_timeout  # RabbitMQ's connect timeout
broker_connection_retry_on_startup = True
broker_connection_max_retries = None  # keep retrying while Redis restarts

# Flower shows workers and every update task from these events.
worker_send_task_events = True
task_send_sent_event = False  # would add a publish to every enqueue on the caller's path

# No hard time limit: the lease is renewed while a slow update runs.
task_time_limit = None

# Celery beat runs the sweeper, for deployments that prefer beat to the workers' timer.
beat_schedule = {
    "motion-sweep": {"task": "motion.sweep", "schedule": _settings.sweep_seconds},
}
timezone = "UTC"

# Keep the user's logging configuration.
worker_hijack_root_logger = False
