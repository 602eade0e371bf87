"""The ``motion.apply`` wake-up message, built without importing Celery.

A wake-up is a Celery protocol-2 task message, JSON, naming only the instance
(``[component, instance_id, flow, seq]``): the update itself waits in the inbox.
When the broker is the state Redis, the enqueue script pushes this message onto
the instance's queue itself (``LPUSH``, as kombu's Redis transport does), so the
update and its wake-up are one atomic round trip; the script writes the seq in
place of :data:`SEQ_PLACEHOLDER` once it knows it. That is the road of
``MOTION_WAKEUP_PER_UPDATE`` (one message per update) and of the sweeper and firer;
by default the script instead puts an idle instance on its queue's *ready list*
(:func:`ready_list`) and builds a ``motion.ready`` message itself (``lua/ready_lib.lua``)
only when none is out for that list: one message starts the drains of many instances
(:mod:`motion.worker.ready`).

Building the message costs a ``json.dumps`` of a dozen headers; it is done once
per ``(component, instance, flow)`` and kept as a template in which only the task
id changes, so the enqueue path stays cheap. In Flower the task shows under the
name ``<Component>.updates`` (Celery's ``shadow`` name, :func:`task_label`): a drain
applies every pending update of the instance, whatever flow woke it, so the name
names no flow; the flow in its arguments is the one that woke it, internal flows
in plain words (:func:`flow_label`).

Floor; uses the floor (keys, settings, slots).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import uuid
import zlib
from collections import OrderedDict
from typing import Any

from motion.floor import keys as K
from motion.floor import slots
from motion.floor.settings import get_settings

APPLY_TASK = "motion.apply"
#: the wake-up of a ready list: it starts the drains of many idle instances at once
READY_TASK = "motion.ready"
SWEEP_TASK = "motion.sweep"
#: the queue every worker consumes: the sweeper task (from Celery beat) goes there
CONTROL_QUEUE = "motion"
#: wake-up queues are named ``motion.<Component>.<n>``
QUEUE_PREFIX = "motion."

#: stands for the seq until the enqueue script knows it; JSON escapes control
#: characters inside strings, so it cannot occur anywhere else in a message
SEQ_PLACEHOLDER = "\x01SEQ\x01"
#: stands for the task id in a cached template (replaced before sending)
_ID_PLACEHOLDER = "\x02ID\x02"
_ORIGIN = f"{os.getpid()}@{socket.gethostname()}"

#: templates kept (least recently used out): one per (component, instance, flow)
TEMPLATES = 4096
_lock = threading.Lock()
_templates: OrderedDict[tuple[str, str, str], tuple[str, str]] = OrderedDict()


#: the arguments' plain words for motion's internal flows (write_state, migrations, sweeps)
_FLOW_LABELS = {"::write": "write_state", "::migrate": "migrate_state", "*sweep*": "sweeper"}


def task_label(component: str) -> str:
    """The name Flower shows for ``component``'s wake-ups (one per component: bounded)."""
    return f"{component}.updates"


def flow_label(flow: str) -> str:
    """The flow as the wake-up's arguments show it (internal flows in plain words)."""
    return _FLOW_LABELS.get(flow, flow)


def shown_flow(flow: str) -> str:
    """The flow as counters show it: an internal flow in plain words and in parentheses,
    ``"(write_state)"``, so it reads as motion's own and not as a user's flow."""
    return f"({_FLOW_LABELS[flow]})" if flow in _FLOW_LABELS else flow


def inline() -> bool:
    """Whether the enqueue script may push wake-ups itself (the broker is the state Redis)."""
    return get_settings().broker_url is None


def queue_for(component: str, instance_id: str) -> str:
    """The wake-up queue of an instance: one of its component's queues, by a stable hash."""
    name = K.instance_name(component, instance_id)
    return f"{QUEUE_PREFIX}{component}.{zlib.crc32(name.encode()) % get_settings().queues}"


def ready_list(component: str, instance_id: str) -> tuple[str, str]:
    """``(queue, ready list)`` of an instance: the enqueue script puts it on the list and
    pushes a ``motion.ready`` message onto the queue only when none is out for the list."""
    name = K.instance_name(component, instance_id)
    queue = queue_for(component, instance_id)
    return queue, K.part(K.READY + queue, name)


Push = tuple[str, bytes]  # (queue, motion.apply message)
Ready = tuple[str, str, str]  # (queue, ready list, component)


def to_push(component: str, instance_id: str, flow: str) -> tuple[Push | None, Ready | None]:
    """What the enqueue script may push itself: ``(message, ready)``, at most one given.

    By default the script puts an idle instance on its queue's ready list (``ready``:
    one ``motion.ready`` message starts many drains); with ``MOTION_WAKEUP_PER_UPDATE``
    it pushes one ``motion.apply`` ``message`` per update. Neither when the broker is
    not the state Redis (the caller sends the wake-up through Celery then).
    """
    if not inline():
        return None, None
    if get_settings().wakeup_per_update:
        return message(component, instance_id, flow), None
    queue, ready = ready_list(component, instance_id)
    return None, (queue, ready, component)


def ready_queue(ready: str) -> str:
    """The Celery queue of the ready list ``ready`` (its name, less any hash-slot part)."""
    queue = ready.removeprefix(K.READY)
    return queue.rpartition(":{")[0] if ":{" in queue else queue


def is_ready_list(component: str, ready: str) -> bool:
    """Whether ``ready`` is one of ``component``'s ready lists (of one of its queues, and
    on a cluster a slot's part of it): a ``motion.ready`` message naming any other key
    is refused, so a malformed or forged one cannot pop or push another list."""
    if not ready.startswith(K.READY + QUEUE_PREFIX + component + "."):
        return False
    queue = ready_queue(ready)
    number = queue.removeprefix(f"{QUEUE_PREFIX}{component}.")
    if not number.isdigit() or int(number) >= get_settings().queues:
        return False
    rest = ready.removeprefix(K.READY + queue)
    if not get_settings().redis_cluster:
        return rest == ""
    tag = rest[2:-1]  # a slot's own tag (motion.floor.slots), nothing else
    return rest == f":{{{tag}}}" and bool(tag) and slots.tag(slots.key_slot(rest)) == tag


#: how long a ready list's count of messages out lives after its last push or take (a
#: task waiting for capacity renews it meanwhile): a count a lost message or a killed
#: worker left behind heals within this time, and the sweeper re-wakes the list's
#: instances once it has
READY_TTL_MS = 2000


def ready_ttl_ms() -> int:
    """:data:`READY_TTL_MS` (the same for every process, whatever its settings)."""
    return READY_TTL_MS


def queues_of(component: str) -> list[str]:
    """The wake-up queues of ``component`` (``MOTION_QUEUES`` of them).

    Each component has queues of its own, and a worker consumes those of the
    components whose code it has: a wake-up never lands on a worker that cannot
    apply it, so workers with different modules can share one Redis.
    """
    return [f"{QUEUE_PREFIX}{component}.{i}" for i in range(get_settings().queues)]


def message(component: str, instance_id: str, flow: str) -> tuple[str, bytes]:
    """``(queue, message)``: a fresh ``motion.apply`` message, its seq a placeholder."""
    key = (component, instance_id, flow)
    with _lock:
        found = _templates.get(key)
        if found is not None:
            _templates.move_to_end(key)
    if found is None:
        found = _template(component, instance_id, flow)
        with _lock:
            _templates[key] = found
            while len(_templates) > TEMPLATES:
                _templates.popitem(last=False)
    queue, template = found
    return queue, template.replace(_ID_PLACEHOLDER, str(uuid.uuid4())).encode()


def fill_seq(message_bytes: bytes, seq: int) -> bytes:
    """``message_bytes`` with the seq written in (for a wake-up sent after the enqueue)."""
    return message_bytes.replace(SEQ_PLACEHOLDER.encode(), b"%d" % seq)


def reset() -> None:
    """Forget the templates (after the number of queues changed, in tests)."""
    with _lock:
        _templates.clear()


def _template(component: str, instance_id: str, flow: str) -> tuple[str, str]:
    """The message of one ``(component, instance, flow)``, task id left as a placeholder."""
    queue = queue_for(component, instance_id)
    label = flow_label(flow)
    args_json = json.dumps([component, instance_id, label])[:-1] + f", {SEQ_PLACEHOLDER}]"
    args_repr = f"{[component, instance_id, label]!r}"[:-1] + f", {SEQ_PLACEHOLDER}]"
    embed = '{"callbacks": null, "errbacks": null, "chain": null, "chord": null}'
    headers: dict[str, Any] = {
        "lang": "py",
        "task": APPLY_TASK,
        "id": _ID_PLACEHOLDER,
        "shadow": task_label(component),
        "eta": None,
        "expires": None,
        "group": None,
        "group_index": None,
        "retries": 0,
        "timelimit": [None, None],
        "root_id": _ID_PLACEHOLDER,
        "parent_id": None,
        "argsrepr": args_repr,
        "kwargsrepr": "{}",
        "origin": _ORIGIN,
        "ignore_result": True,
        "replaced_task_nesting": 0,
        "stamped_headers": None,
        "stamps": {},
    }
    body = {
        "body": f"[{args_json}, {{}}, {embed}]",
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": headers,
        "properties": {
            "correlation_id": _ID_PLACEHOLDER,
            "reply_to": None,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "utf-8",  # the body stays plain JSON text
            # kombu keys unacknowledged messages by this tag: unique per message
            "delivery_tag": _ID_PLACEHOLDER,
        },
    }
    raw = json.dumps(body)
    # json.dumps escaped the placeholders' control characters: put them back raw
    for placeholder in (SEQ_PLACEHOLDER, _ID_PLACEHOLDER):
        raw = raw.replace(json.dumps(placeholder)[1:-1], placeholder)
    return queue, raw
