"""A producer process for the ordering tests: ``python -m producer ID N INSTANCE...``.

Sends N ``Ledger.add`` updates, round-robin over the instances, each item tagged
``"<ID>:<i>"`` so a test can check every producer's own order.
"""

from __future__ import annotations

import sys

from ledger import Ledger


def main() -> None:
    producer, count, instances = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    handles = [Ledger(name) for name in instances]
    for i in range(count):
        handles[i % len(handles)].run("add", {"item": f"{producer}:{i}"})


if __name__ == "__main__":
    main()
