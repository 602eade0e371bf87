"""A load producer for the fault battery: ``python -m battery_producer OPTIONS``.

Runs Ledger flows on a set of instances at a steady rate until a stop file
appears (or ``--seconds`` pass): mostly ``add`` (serve inline, then enqueue),
some ``slow`` (update only, a few ms in the op), and version reads. Each
producer visits the instances in its own shuffled cycle, so every instance gets
updates from every producer, interleaved. Items are ``"<producer>:<n>"`` with
``n`` growing, so a test can check each producer's order per instance.

It writes a JSON summary to ``--out``: per instance the items whose ``run``
returned (``acked``) and those whose ``run`` raised (``uncertain``: the update
may or may not have been enqueued), error counts by type with a few messages,
and how many times a read saw the version go backwards.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from collections import Counter, defaultdict
from pathlib import Path

from ledger import Ledger
from pacing import Pace


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--instances", type=int, required=True)
    parser.add_argument("--rate", type=float, default=50.0, help="updates per second")
    parser.add_argument("--seconds", type=float, default=120.0, help="hard upper bound")
    parser.add_argument("--prefix", default="load")
    args = parser.parse_args()

    rng = random.Random(f"{args.id}-{os.getpid()}")
    names = [f"{args.prefix}-{i}" for i in range(args.instances)]
    order = names[:]
    rng.shuffle(order)
    handles = {name: Ledger(name) for name in names}
    acked: dict[str, list[str]] = defaultdict(list)
    uncertain: dict[str, list[str]] = defaultdict(list)
    errors: Counter[str] = Counter()
    messages: list[str] = []
    versions: dict[str, int] = {}
    regressions = 0
    stop = Path(args.stop)
    started = time.monotonic()
    pace = Pace(args.rate)
    n = 0
    while not stop.exists() and time.monotonic() - started < args.seconds:
        name = order[n % len(order)]
        handle = handles[name]
        item = f"{args.id}:{n}"
        n += 1
        failed = False
        try:
            if n % 10 == 0:
                version = handle.get_version()
                if version < versions.get(name, 0):
                    regressions += 1
                versions[name] = version
            if n % 7 == 0:
                handle.run("slow", {"item": item, "sleep": 0.003})
            else:
                handle.run("add", {"item": item})
            acked[name].append(item)
        except Exception as exc:  # recorded: the test decides which errors are acceptable
            uncertain[name].append(item)
            errors[type(exc).__name__] += 1
            if len(messages) < 5:
                messages.append(f"{type(exc).__name__}: {exc}")
            failed = True
        pace.next(failed)
    summary = {
        "acked": acked,
        "uncertain": uncertain,
        "errors": errors,
        "messages": messages,
        "regressions": regressions,
        "sent": n,
    }
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(summary))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
