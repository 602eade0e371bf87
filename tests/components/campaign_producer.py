"""A load producer of the fault campaign: ``python -m campaign_producer OPTIONS``.

Runs flows of ``Journal`` and ``Hooked`` instances at a steady rate until a stop
file appears, choosing instance and flow with its own seeded RNG: mostly ``add``,
some ``slow``, and, once the file ``<control>/v2`` exists (a rolling deploy has
begun), some ``note`` (a flow only the new workers have). Items are
``"<producer>:<n>"`` with ``n`` growing, so the checker can check each producer's
order per instance.

It writes its history as JSON to ``--out``: one record per ``run`` call, with the
instance, item, flow, wall-clock start and end (``t0``, ``t1``) and the outcome:
``ok`` (the enqueue returned: an accepted update) or the exception's type, and
whether that exception is a :class:`~motion.errors.MotionError`.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from campaign_journal import Hooked, Journal
from pacing import Pace

from motion.errors import MotionError

COMPONENTS = {"Journal": Journal, "HookedJournal": Hooked}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--id", required=True)
    parser.add_argument("--seed", type=int, required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--control", required=True, help="folder of the stop and v2 files")
    parser.add_argument("--instances", required=True, help="comma list of Comp__id names")
    parser.add_argument("--rate", type=float, default=25.0, help="runs per second")
    parser.add_argument("--seconds", type=float, default=900.0, help="hard upper bound")
    args = parser.parse_args()

    rng = random.Random(f"{args.seed}:{args.id}")
    control = Path(args.control)
    names = args.instances.split(",")
    handles = {}
    for name in names:
        component, _, instance_id = name.partition("__")
        handles[name] = COMPONENTS[component](instance_id)
    history: list[dict] = []
    v2 = False
    started = time.monotonic()
    pace = Pace(args.rate)
    n = 0
    while not (control / "stop").exists() and time.monotonic() - started < args.seconds:
        if not v2 and (control / "v2").exists():
            import campaign_journal_v2  # noqa: F401  (the new code: adds the note flow)

            v2 = True
        name = rng.choice(names)
        roll = rng.random()
        flow = "note" if v2 and roll < 0.15 else "slow" if roll > 0.9 else "add"
        item = f"{args.id}:{n}"
        n += 1
        props = {"item": item, "sleep": 0.05} if flow == "slow" else {"item": item}
        record = {"name": name, "item": item, "flow": flow, "expect": "apply"}
        record["t0"] = time.time()
        try:
            handles[name].run(flow, props)
            record["outcome"] = "ok"
        except Exception as exc:  # the checker decides which errors are acceptable
            record["outcome"] = type(exc).__name__
            record["motion_error"] = isinstance(exc, MotionError)
            record["message"] = str(exc)[:300]
        record["t1"] = time.time()
        history.append(record)
        pace.next(failed=record["outcome"] != "ok")
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps(history))
    tmp.replace(args.out)


if __name__ == "__main__":
    main()
