"""The client side of one update, in one process: a caller's ``run`` and a worker's drain.

``python -m benchmarks.client_cost [N]`` starts a private redis-server (no AOF), then:

1. ``N`` (default 2,000) sequential no-op ``EVALSHA`` round trips on one redis-py
   connection: the floor a sequential caller stands on (W3's reference);
2. ``N`` sequential ``run``s of an update-only flow (``BenchIdle.add``) on one
   instance, with no worker (the enqueue alone: serialising the props, building the
   call, one ``EVALSHA``);
3. ``N`` instances with one pending update each, drained one after another in this
   process by :func:`motion.worker.engine.drain` (what a worker's pool thread runs per
   instance: ``begin``, the op, ``commit``), no Celery involved;

and prints microseconds per call for each, with the server time of the scripts they
ran (``INFO commandstats``: ``EVALSHA``'s usec per call, which includes the commands
a script runs). What is left once the server time and a no-op round trip are taken
off is this process's own CPU per call (Python, redis-py, hiredis). Three rounds take
turns; the minimum of each is printed. On a shared machine compare within one run.
"""

from __future__ import annotations

import os
import sys
import time

import redis

from benchmarks.harness import HERE, scratch_server


def _script_usec(client: redis.Redis) -> float:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return float(stats.get("usec_per_call", 0.0))


def main(argv: list[str]) -> None:
    """Print the per-call costs (see the module docstring)."""
    n = int(argv[0]) if argv else 2000
    with scratch_server("client-cost-") as server:
        port = server.port
        os.environ["MOTION_REDIS_URL"] = server.url
        os.environ["MOTION_INPROCESS_WORKER"] = "0"
        sys.path.insert(0, str(HERE))  # bench_components, as the workers import it
        from bench_components import Idle as cost  # an update op that counts, no more

        from motion.worker import engine

        client = redis.Redis(port=port)
        noop = client.script_load("return 0")
        rows: dict[str, list[tuple[float, float]]] = {}
        for turn in range(3):
            client.config_resetstat()
            start = time.perf_counter()
            for _ in range(n):
                client.evalsha(noop, 0)
            rows.setdefault("no-op EVALSHA", []).append(
                ((time.perf_counter() - start) / n * 1e6, _script_usec(client))
            )
            hot = cost(f"hot-{turn}")
            hot.read_state("n")
            client.config_resetstat()
            start = time.perf_counter()
            for i in range(n):
                hot.run("add", {"i": i})
            rows.setdefault("run (enqueue, no worker)", []).append(
                ((time.perf_counter() - start) / n * 1e6, _script_usec(client))
            )
            handles = [cost(f"d{turn}-{k}") for k in range(n)]
            for h in handles:
                h.run("add", {"i": 0})
            client.config_resetstat()
            start = time.perf_counter()
            for h in handles:
                engine.drain(cost, h.instance_id)
            rows.setdefault("drain of one update", []).append(
                ((time.perf_counter() - start) / n * 1e6, _script_usec(client))
            )
            if handles[-1].read_state("n") != 1:
                raise SystemExit("a drain did not apply its update")
        for what, values in rows.items():
            wall = min(v[0] for v in values)
            script = min(v[1] for v in values)
            print(f"{what:26s} {wall:7.0f} us per call   (scripts: {script:5.1f} us per EVALSHA)")


if __name__ == "__main__":
    main(sys.argv[1:])
