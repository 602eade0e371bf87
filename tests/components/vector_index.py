"""A component whose state holds an MTable (vectors + labels) and an MDataFrame (a log).

``VectorIndex.add`` appends a row to both on a worker; ``VectorIndex.search`` runs
``knn`` on the committed table in the caller. With ``init_state_params={"parquet":
True}`` the table is stored as parquet on the local filesystem (under ``~/.motion``).
"""

from __future__ import annotations

import pyarrow as pa

from motion import Component, MDataFrame, MTable

VectorIndex = Component("VectorIndex")

SCHEMA = pa.schema([pa.field("vec", pa.list_(pa.float32(), 3)), pa.field("label", pa.string())])


@VectorIndex.init_state
def setup(parquet: bool = False) -> dict:
    table = MTable.from_schema(SCHEMA)
    if parquet:
        table.filesystem = pa.fs.LocalFileSystem()
    return {"table": table, "log": MDataFrame({"label": pa.array([], pa.string()).to_pandas()})}


@VectorIndex.update("add")
def add(state, props):
    table = state["table"]
    table.add_row({"vec": props["vec"], "label": props["label"]})
    log = state["log"]
    log.loc[len(log)] = [props["label"]]
    return {"table": table, "log": log}


@VectorIndex.serve("search")
def search(state, props):
    return state["table"].knn("vec", props["query"], props.get("k", 2), props["metric"], ["label"])
