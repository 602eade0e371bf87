"""fastvs's side of ``benchmarks/knn.py``: runs in ``benchmarks/.fastvs-venv``, prints JSON.

``python fastvs_driver.py DATA.npy QUERIES.npy K REPEATS [METRIC,...]`` loads the float32 vectors,
builds the column fastvs reads (a ``list<double>`` column: fastvs 0.1.8 takes only
float64 ``ListArray`` vectors), then times ``fastvs.search_arrow`` for each metric
(fastvs calls the dot product ``inner_product``) over the query points. Building the
column is not timed. Prints ``{"metric": {"seconds": [...], "indices": [[...], ...]}}``.
"""

from __future__ import annotations

import json
import sys
import time

import fastvs
import numpy as np
import pyarrow as pa

METRICS = {
    "euclidean": "euclidean",
    "manhattan": "manhattan",
    "cosine_similarity": "cosine_similarity",
    "dot_product": "inner_product",
}


def main() -> None:
    data, queries = np.load(sys.argv[1]), np.load(sys.argv[2])
    k, repeats = int(sys.argv[3]), int(sys.argv[4])
    rows, dim = data.shape
    offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
    column = pa.ListArray.from_arrays(offsets, pa.array(data.astype(np.float64).ravel()))
    table = pa.table({"vec": column})
    wanted = sys.argv[5].split(",") if len(sys.argv) > 5 else list(METRICS)
    out: dict[str, dict[str, list]] = {}
    for ours in wanted:
        theirs = METRICS[ours]
        seconds, indices = [], []
        for r in range(repeats):
            query = queries[r % len(queries)].astype(np.float64)
            start = time.perf_counter()
            found, _ = fastvs.search_arrow(table, "vec", query, k, theirs)
            seconds.append(time.perf_counter() - start)
            indices.append([int(i) for i in found])
        out[ours] = {"seconds": seconds, "indices": indices}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
