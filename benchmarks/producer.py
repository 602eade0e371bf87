"""A W7 producer process: ``python benchmarks/producer.py NAME N INSTANCE GO_KEY``.

Marks itself ready, waits for ``GO_KEY`` to appear in Redis (so both producers
start together), then sends N ``BenchCounter.add`` updates tagged ``p=NAME``,
``i=0..N-1`` through one handle.
"""

from __future__ import annotations

import sys
import time

from bench_components import Counter

from motion.floor.connection import get_redis


def main() -> None:
    name, count, instance, go = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    handle = Counter(instance)
    handle.read_state("n")  # connect and load before the start signal
    client = get_redis()
    client.set(f"{go}:ready:{name}", 1, ex=600)
    deadline = time.monotonic() + 60
    while not client.exists(go):
        if time.monotonic() > deadline:
            raise SystemExit("no start signal within 60 s")
        time.sleep(0.001)
    for i in range(count):
        handle.run("add", {"p": name, "i": i})


if __name__ == "__main__":
    main()
