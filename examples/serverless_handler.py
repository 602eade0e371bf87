"""A serverless producer: an AWS-Lambda-style handler that enqueues motion updates.

The function does not import the component's code (the workers have it): it
needs only ``motion`` and the Redis URL. Deploy it with ``MOTION_REDIS_URL``
(and ``MOTION_SIGNING_KEY`` if the workers check signatures) in its
environment. The Redis client is made once per container and reused by every
warm invocation.

The event is either one update or an SQS-style batch of them::

    {"component": "Summary", "instance_id": "user-42", "flow": "purchase",
     "props": {"item": "socks"}}

    {"Records": [{"body": "<the same object as JSON>"}, ...]}

Run it locally against the Redis your workers use::

    MOTION_REDIS_URL=redis://localhost:6379/0 python examples/serverless_handler.py \\
        '{"component": "Summary", "instance_id": "user-42", "flow": "purchase",
          "props": {"item": "socks"}}'
"""

from __future__ import annotations

import json
import sys
from typing import Any

from motion.errors import InstanceNotFoundError
from motion.tools.producer import enqueue


def _updates(event: dict[str, Any]) -> list[dict[str, Any]]:
    if "Records" in event:
        return [json.loads(record["body"]) for record in event["Records"]]
    return [event]


def handler(event: dict[str, Any], context: Any = None) -> dict[str, Any]:
    """Enqueue every update in ``event``; report each one's seq (or why it was refused).

    A missing instance is reported, not retried: the function cannot run the
    component's ``init_state``, and nothing was stored for it. Any other error
    (Redis unreachable) propagates, so the platform retries the event: updates of
    a batch enqueued before the failure are then enqueued again, so send one
    update per event, or put an id in the props, if an op must not see one twice.
    """
    results = []
    for update in _updates(event):
        try:
            seq = enqueue(
                update["component"],
                update["instance_id"],
                update["flow"],
                update.get("props") or {},
                initial_state=update.get("initial_state"),
            )
        except InstanceNotFoundError as exc:
            results.append({"instance_id": update["instance_id"], "error": str(exc)})
        else:
            results.append({"instance_id": update["instance_id"], "seq": seq})
    return {"statusCode": 200, "body": json.dumps(results)}


if __name__ == "__main__":
    print(handler(json.loads(sys.argv[1]))["body"])
