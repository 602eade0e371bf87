"""A W11 producer: ``python benchmarks/wide_producer.py KIND P PRODUCERS N TOTAL PREFIX GO``.

Producer ``P`` of ``PRODUCERS`` sends its share (``TOTAL / PRODUCERS``) of the run's
updates, numbered ``j`` from ``P * share``: update ``j`` goes to instance ``j mod N``
(``BenchWide`` ids ``PREFIX-<k>``), so a producer cycles through the instances and
never sends two updates in a row to one instance. Each update carries ``p=P`` and
``i``, the count of this producer's earlier updates to that instance (the op checks
the order). ``KIND`` ``celery`` sends raw Celery no-op tasks instead, round robin
over BenchWide's queues. Marks ``GO:ready:P`` once connected, then waits for ``GO``.
"""

from __future__ import annotations

import sys
import time

from motion.floor.connection import get_redis


def main() -> None:
    kind, index, producers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    n, total, prefix, go = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
    share = total // producers
    first = index * share
    client = get_redis()
    if kind == "celery":
        from motion.floor.celery_app import get_app, task_queue
        from motion.floor.wakeup import queues_of

        app = get_app()
        queues = [task_queue(q) for q in queues_of("BenchWide")]

        def send(j: int) -> None:
            app.send_task("bench.noop", queue=queues[j % len(queues)], ignore_result=True)
    else:
        from bench_components import Wide

        handles = {}
        counts: dict[int, int] = {}

        def send(j: int) -> None:
            k = j % n
            handle = handles.get(k)
            if handle is None:
                handle = handles[k] = Wide(f"{prefix}-{k}")
            i = counts.get(k, 0)
            counts[k] = i + 1
            handle.run("add", {"p": str(index), "i": i})

    client.set(f"{go}:ready:{index}", 1, ex=600)
    deadline = time.monotonic() + 120
    while not client.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no start signal within 120 s")
        time.sleep(0.001)
    for j in range(first, first + share):
        send(j)


if __name__ == "__main__":
    main()
