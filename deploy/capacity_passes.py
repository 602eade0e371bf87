"""``python deploy/capacity.py passes``: what the recurring passes over a cluster's
index parts cost, with 0, 1,000 and 100,000 instances pending.

Starts a Redis Cluster of ``--primaries`` primaries (as ``capacity.py cluster`` does),
then for each count of ``--pending`` fills the pending index and the sweep schedule
with that many instance names (written as the enqueue script writes them, with the
sweep schedule's directory listing each part made non-empty, as the enqueue's caller
does; the names are not due for a look, as right after an enqueue) and times, over
``--repeat`` runs each (median of the wall time, and this process's CPU):

* ``sweeper``: a sweeper pass (``sweep_once``: the directory's due parts, then those);
* ``firer``: a firer pass (``fire_once``: the due index's directory);
* ``pending index``: what the exporter reads of the pending index (the directory, then
  ``ZCARD`` and the oldest of each listed part);
* ``exporter``: ``metrics.collect`` (that, the backlog of a sample of up to 1,000 of the
  oldest pending instances, and the component and counter indexes, read from their
  directories: the parts listed);
* ``held``: the held-instance check (``holds.listing``);
* ``all parts``: the same reads as ``pending index`` over every one of the 16,384
  parts (what each pass cost before the directories), and ``full pass`` (the rare
  re-listing of every directory, :func:`motion.floor.directory.rebuild` and
  :func:`~motion.floor.directory.rebuild_kept`).

Each row also gives how many parts of the pending index the directory lists. Everything
started is stopped at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any

import capacity as cap
import capacity_cluster


def _fill(client: Any, start: int, count: int) -> None:
    """``count`` more pending names (numbered from ``start``), each in the pending index
    and the sweep schedule (scored now), and the sweep schedule's directory listing
    their parts."""
    from motion.floor import keys as K

    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    listed: dict[str, int] = {}
    for i in range(start, start + count):
        name = K.instance_name("Passes", f"p{i}")
        pipe.zadd(K.part(K.PENDING, name), {name: now}, nx=True)
        pipe.zadd(K.part(K.SWEEP, name), {name: now}, nx=True)
        listed[K.tag_of(name)] = now
        if len(pipe) >= 20_000:
            pipe.execute()
    if listed:
        pipe.zadd(K.directory(K.SWEEP), listed, lt=True)
    pipe.execute()


def _time(action: Any, repeat: int) -> tuple[float, float]:
    """Median wall ms and median CPU ms of this process over ``repeat`` runs."""
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        action()
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    return statistics.median(walls), statistics.median(cpus)


def _pending(client: Any, every: bool = False) -> tuple[int, Any]:
    """What the exporter reads of the pending index: its listed parts' sizes and oldest
    (``every``: of all 16,384 parts, as before the directories)."""
    from motion.floor import directory, indexes
    from motion.floor import keys as K

    listed = None if every else directory.parts(client, K.SWEEP, K.PENDING)
    return indexes.zcard(client, K.PENDING, listed), indexes.oldest(client, K.PENDING, 1, listed)


def _row(pending: int, repeat: int) -> dict[str, Any]:
    from motion.floor import directory
    from motion.floor import keys as K
    from motion.floor.connection import get_redis
    from motion.tools import metrics
    from motion.worker import firer, holds, sweeper

    client = get_redis()
    sent: list[Any] = []
    passes = {
        "sweeper": lambda: sweeper.sweep_once(client, lambda *wake: sent.append(wake)),
        "firer": lambda: firer.fire_once(client, lambda *wake: sent.append(wake)),
        "pending index": lambda: _pending(client),
        "exporter": lambda: metrics.collect(client),
        "held": lambda: holds.listing(client),
        "all parts": lambda: _pending(client, every=True),
        "full pass": lambda: [
            *(directory.rebuild(client, index) for index in directory.INDEXES),
            directory.rebuild_kept(client),
        ],
    }
    row: dict[str, Any] = {"pending": pending}
    row["listed parts"] = len(directory.parts(client, K.SWEEP, K.PENDING))
    for name, action in passes.items():
        wall, cpu = _time(action, 3 if name == "full pass" else repeat)
        row[f"{name} ms"] = f"{wall:.1f} ({cpu:.1f} cpu)"
    assert not sent, "nothing was due: a pass sent a wake-up"
    return row


def run(args: argparse.Namespace) -> None:
    """One row per count of ``--pending``."""
    print(
        f"# passes over a cluster's index parts: {args.primaries} primaries, median of "
        f"{args.repeat} runs, wall ms (this process's cpu ms)"
    )
    with capacity_cluster.cluster(args.primaries) as (url, _):
        os.environ.update(MOTION_REDIS_URL=url, MOTION_BROKER_URL="redis://127.0.0.1:1/0")
        os.environ["MOTION_SWEEP_SECONDS"] = "3600"  # none due for a look during the run
        from motion.floor.connection import get_redis

        client = get_redis()
        filled = 0
        for i, pending in enumerate(sorted(args.pending)):
            _fill(client, filled, pending - filled)
            filled = pending
            cap._emit(_row(pending, args.repeat), i == 0, args.json)


def add_parser(sub: Any, parents: list[argparse.ArgumentParser]) -> None:
    """The ``passes`` subcommand."""
    cmd = sub.add_parser("passes", parents=parents, help="cost of a pass over a cluster's parts")
    cmd.add_argument("--primaries", type=int, default=3)
    cmd.add_argument("--pending", type=cap._counts, default=[0, 1000, 100_000], help="e.g. 0,1000")
    cmd.add_argument("--repeat", type=int, default=20)
    cmd.add_argument("--json", action="store_true", help="JSON lines")
