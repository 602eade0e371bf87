"""A component for the dashboard's browser tests: an update that fails until a file
exists (a dead letter to retry), and one that stores a table (an MTable).

``Shelf.flaky`` raises while ``props['gate']`` names a missing file, else counts;
``Shelf.table`` stores ``props['rows']`` (a list of dicts) as an ``MTable``.
"""

from __future__ import annotations

from pathlib import Path

from motion import Component

Shelf = Component("Shelf")


@Shelf.init_state
def setup() -> dict:
    return {"n": 0, "title": "shelf"}


@Shelf.update("flaky")
def flaky(state, props):
    if not Path(props["gate"]).exists():
        raise RuntimeError(f"the gate file {props['gate']} is missing")
    return {"n": state["n"] + 1}


@Shelf.update("table")
def table(state, props):
    import pandas as pd

    from motion.mtable import MTable

    return {"table": MTable.from_pandas(pd.DataFrame(props["rows"]))}
