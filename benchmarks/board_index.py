"""The dashboard's instance listing at scale: pages and prefix searches over N instances.

``.venv/bin/python -m benchmarks.board_index [--instances 1000000] [--samples 200]``
starts its own redis-server (loopback, free port), creates N instances of
``bench_components.Idle`` with the ``init`` script (as a handle's first ``run`` does,
5,000 per pipeline; the script also adds each id to the component's name index),
then measures, each over ``--samples`` calls:

- ``page``: :func:`motion.tools.names.page` from a random cursor (50 ids);
- ``search``: a random id prefix of 3 to 6 characters (the first 50 matches);
- ``http page`` / ``http search``: the same through the dashboard's ``/component``
  route (FastAPI TestClient: routing, reading and rendering the HTML);
- the index's memory: ``MEMORY USAGE`` of the sorted set, per instance, and
  ``used_memory`` before and after deleting it;
- the one-time ``SCAN`` build for instances created before the index existed;
- for comparison, one prefix search done the way the dashboard did before the index
  (``SCAN MATCH`` over every key until 50 ids are found or the keyspace ends).

Prints a JSON object of the figures (``benchmarks/README.md`` records a run).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness import HERE, RedisServer, percentile

CHUNK = 5000


def _create(client: Any, count: int) -> None:
    from bench_components import Idle

    from motion.floor import keys as K
    from motion.floor import scripts, store

    sha = client.script_load(scripts.get("init").source)
    component, now, _, version, *fields = store.init_args(
        Idle, "x", {"n": 0}, store.new_incarnation()
    )
    index = K.names(Idle.name)
    for lo in range(0, count, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(lo, min(lo + CHUNK, count)):
            ik = K.InstanceKeys.of(K.instance_name(Idle.name, f"i{i:07d}"))
            args = [component, now, store.new_incarnation(), version, *fields]
            pipe.evalsha(sha, 5, ik.meta, ik.state, K.COMPONENTS, ik.claim, index, *args)
        pipe.execute()


def _timed(call: Any, samples: int) -> dict[str, float]:
    times = []
    for i in range(samples):
        start = time.perf_counter()
        call(i)
        times.append((time.perf_counter() - start) * 1000)
    return {"p50_ms": percentile(times, 50), "p95_ms": percentile(times, 95)}


def _old_scan_search(client: Any, component: str, prefix: str, size: int = 50) -> int:
    """A prefix search as the dashboard did it before the index: SCAN MATCH pages."""
    pattern = f"motion:{{{component}__{prefix}*}}:meta"
    found, cursor, count = 0, 0, 50
    while True:
        cursor, keys = client.scan(cursor, match=pattern, count=count)
        found += len(keys)
        if found >= size or int(cursor) == 0:
            return found
        if len(keys) < size // 4:
            count = min(count * 2, 5000)


def main(argv: list[str] | None = None) -> int:
    """Run the measurement and print its figures as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args(argv)
    sys.path.insert(0, str(HERE))
    folder = Path(tempfile.mkdtemp(prefix="motion-board-index-"))
    server = RedisServer(folder).start()
    os.environ["MOTION_REDIS_URL"] = server.url
    os.environ["MOTION_INPROCESS_WORKER"] = "0"
    try:
        return _measure(server, args.instances, args.samples)
    finally:
        server.stop()


def _measure(server: RedisServer, count: int, samples: int) -> int:
    from bench_components import Idle
    from fastapi.testclient import TestClient

    from motion.floor import keys as K
    from motion.tools import names
    from motion.tools.board import create_dashboard

    client = server.client()
    client.config_set("appendonly", "no")  # no AOF rewrite forks during the bulk load
    start = time.perf_counter()
    _create(client, count)
    out: dict[str, Any] = {"instances": count, "create_s": time.perf_counter() - start}
    index = K.names(Idle.name)
    assert client.zcard(index) == count, client.zcard(index)
    out["index_bytes_per_instance"] = client.memory_usage(index, samples=0) / count
    rng = random.Random(13)
    ids = [f"i{rng.randrange(count):07d}" for _ in range(samples)]
    prefixes = [f"i{rng.randrange(count):07d}"[: rng.randint(3, 6)] for _ in range(samples)]
    names.page(Idle.name, "", "", 50)  # the first listing (index ready: no build)
    out["page"] = _timed(lambda i: names.page(Idle.name, "", ids[i], 50), samples)
    out["search"] = _timed(lambda i: names.page(Idle.name, prefixes[i], "", 50), samples)
    http = TestClient(create_dashboard(key=""))

    def get(params: dict[str, str]) -> None:
        reply = http.get("/component", params={"name": Idle.name, **params})
        assert reply.status_code == 200 and 'href="/instance?' in reply.text, reply.text[-300:]

    out["http_page"] = _timed(lambda i: get({"cursor": ids[i]}), samples)
    out["http_search"] = _timed(lambda i: get({"prefix": prefixes[i][:4]}), samples)
    before = int(client.info("memory")["used_memory"])
    client.delete(index, K.names_ready(Idle.name))
    out["index_used_memory_bytes_per_instance"] = (
        before - int(client.info("memory")["used_memory"])
    ) / count
    start = time.perf_counter()
    built = names.build(client, Idle.name)
    out["build_s"] = time.perf_counter() - start
    assert built == count and client.zcard(index) == count, (built, client.zcard(index))
    start = time.perf_counter()
    _old_scan_search(client, Idle.name, "i0500")
    out["old_scan_search_s"] = time.perf_counter() - start
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
