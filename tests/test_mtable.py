"""MTable and MDataFrame: every method and error, each metric against numpy, pickling, in state.

Unit tests need no network; the integration tests keep an MTable and an MDataFrame in
a component's state, add rows with update ops on a real Celery worker and search them
with a serve op.
"""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from pathlib import Path

import cloudpickle
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from motion import MotionError
from motion.df import MDataFrame
from motion.errors import (
    ColumnError,
    ColumnNotFoundError,
    MissingDependencyError,
    SerializationError,
    TableConstructionError,
    TableIndexError,
    TableTypeError,
    VectorSearchError,
)
from motion.mtable import MTable
from tests.support import COMPONENTS, ROOT

METRICS = ["euclidean", "manhattan", "cosine_similarity", "dot_product"]


def people() -> MTable:
    return MTable.from_pandas(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}))


def vectors_table(matrix: np.ndarray, fixed: bool = True) -> MTable:
    n, d = matrix.shape
    flat = pa.array(matrix.ravel())
    if fixed:
        column = pa.FixedSizeListArray.from_arrays(flat, d)
    else:
        column = pa.ListArray.from_arrays(
            pa.array(np.arange(0, n * d + 1, d, dtype=np.int32)), flat
        )
    return MTable.from_arrow(pa.table({"vec": column, "row": pa.array(np.arange(n))}))


def reference(matrix: np.ndarray, query: np.ndarray, metric: str) -> np.ndarray:
    """Each metric computed plainly in float64, the way a reader of the docs would."""
    x, q = matrix.astype(np.float64), query.astype(np.float64)
    if metric == "euclidean":
        return np.sqrt(((x - q) ** 2).sum(axis=1))
    if metric == "manhattan":
        return np.abs(x - q).sum(axis=1)
    if metric == "dot_product":
        return x @ q
    return (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q))


# -- creation, properties ---------------------------------------------------------


def test_constructors_and_direct_call() -> None:
    assert people().data.num_rows == 3 and people().data.num_columns == 2
    arrow = pa.table({"a": [1, 2]})
    assert MTable.from_arrow(arrow).data is arrow
    schema = pa.schema([pa.field("a", pa.int32()), pa.field("b", pa.string())])
    empty = MTable.from_schema(schema)
    assert empty.data.num_rows == 0 and empty.data.schema == schema
    with pytest.raises(NotImplementedError, match="from_pandas"):
        MTable(arrow)
    with pytest.raises(TableConstructionError):
        MTable()


def test_data_filesystem_identifier_properties() -> None:
    table = people()
    table.data = pa.table({"c": [1.5]})
    assert table.data.column_names == ["c"]
    with pytest.raises(TableTypeError, match=r"pyarrow\.Table"):
        table.data = pd.DataFrame({"c": [1]})
    assert table.filesystem is None and table.identifier is None
    fs = pafs.LocalFileSystem()
    table.filesystem = fs
    table.identifier = "/tmp/somewhere"
    assert table.filesystem is fs and table.identifier == "/tmp/somewhere"
    with pytest.raises(TypeError, match="FSSpecHandler"):
        table.filesystem = "/tmp"  # type: ignore[assignment]


# -- rows and columns -------------------------------------------------------------


def test_add_row_and_its_errors() -> None:
    table = MTable.from_schema(pa.schema([pa.field("a", pa.int32()), pa.field("b", pa.string())]))
    table.add_row({"a": 1, "b": "x"})
    table.add_row({"a": 2, "b": "y", "ignored": 0})
    assert table.data.to_pydict() == {"a": [1, 2], "b": ["x", "y"]}
    with pytest.raises(KeyError, match="'b'") as missing:
        table.add_row({"a": 3})
    assert isinstance(missing.value, ColumnNotFoundError | MotionError)
    with pytest.raises(TypeError, match="schema") as mismatch:
        table.add_row({"a": "not a number", "b": "z"})
    assert isinstance(mismatch.value, TableTypeError)
    with pytest.raises(TypeError):
        table.add_row({"a": 1, "b": 5})
    assert table.data.num_rows == 2  # a failed add leaves the table as it was


def test_remove_row_keeps_and_returns_the_new_table() -> None:
    table = people()
    returned = table.remove_row(1)
    assert returned is table.data and table.data.column("b").to_pylist() == ["x", "z"]
    table.data = table.remove_row(0)  # Motion's idiom
    assert table.data.column("b").to_pylist() == ["z"]
    for bad in (-1, 1, 5):
        with pytest.raises(IndexError, match="out of range"):
            table.remove_row(bad)


def test_add_append_remove_columns() -> None:
    table = people()
    table.append_column("c", pa.array([1.0, 2.0, 3.0]))
    table.add_column(0, pa.field("first", pa.int8()), pa.array([7, 8, 9], pa.int8()))
    assert table.data.column_names == ["first", "a", "b", "c"]
    assert table.data.schema.field("first").type == pa.int8()
    with pytest.raises(ValueError, match="'a' already exists") as taken:
        table.append_column("a", pa.array([0, 0, 0]))
    assert isinstance(taken.value, ColumnError)
    with pytest.raises(ValueError, match="already exists"):
        table.add_column(1, pa.field("first", pa.int64()), pa.array([0, 0, 0]))
    with pytest.raises(ColumnError, match="cannot be added"):
        table.append_column("short", pa.array([1]))
    with pytest.raises(TableIndexError):
        table.add_column(9, "far", pa.array([1, 2, 3]))
    table.remove_column(0)
    table.remove_column_by_name("c")
    assert table.data.column_names == ["a", "b"]
    with pytest.raises(KeyError, match="no column 'nope'"):
        table.remove_column_by_name("nope")
    with pytest.raises(IndexError):
        table.remove_column(2)


# -- vector search ------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fixed", [True, False], ids=["fixed_size_list", "list"])
def test_each_metric_matches_numpy(metric: str, dtype: type, fixed: bool) -> None:
    rng = np.random.default_rng(7)
    matrix = rng.standard_normal((3000, 24)).astype(dtype)
    query = rng.standard_normal(24)
    table = vectors_table(matrix, fixed)
    expected = reference(matrix, query, metric)
    rtol = 1e-4 if dtype == np.float32 else 1e-9
    applied = table.apply_distance("vec", query, metric)
    assert applied.column_names == ["vec", "row", "distances"]
    assert applied.schema.field("distances").type == pa.float64()
    np.testing.assert_allclose(
        applied.column("distances").to_numpy(), expected, rtol=rtol, atol=rtol
    )
    result = table.knn("vec", query, 10, metric)
    best_first = np.argsort(
        -expected if metric in ("cosine_similarity", "dot_product") else expected
    )
    assert result.column("row").to_pylist() == best_first[:10].tolist()
    np.testing.assert_allclose(
        result.column("distances").to_numpy(), expected[best_first[:10]], rtol=rtol, atol=rtol
    )


def test_order_and_sign_as_fastvs() -> None:
    table = vectors_table(np.array([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0], [-1.0, 0.0]]))
    near = table.knn("vec", [1.0, 0.0], 4, "euclidean")
    assert near.column("row").to_pylist() == [0, 1, 2, 3]
    assert near.column("distances").to_pylist() == pytest.approx([0.0, 2**0.5, 2.0, 2.0])
    # similarities: largest first, reported as the similarity itself (not negated)
    dot = table.knn("vec", [1.0, 0.0], 4, "dot_product")
    assert dot.column("row").to_pylist() == [2, 0, 1, 3]
    assert dot.column("distances").to_pylist() == [3.0, 1.0, 0.0, -1.0]
    cos = table.knn("vec", [1.0, 0.0], 2, "cosine_similarity")
    assert cos.column("row").to_pylist() == [0, 2]  # a tie keeps row order
    assert cos.column("distances").to_pylist() == [1.0, 1.0]
    inner = table.knn("vec", [1.0, 0.0], 1, "inner_product")  # fastvs's name
    assert inner.column("row").to_pylist() == [2]


def test_ties_at_the_kth_place_keep_row_order() -> None:
    matrix = np.zeros((50, 4))
    matrix[10:] = 1.0  # rows 10..49 all at the same distance
    result = vectors_table(matrix).knn("vec", np.full(4, 1.0), 5, "manhattan")
    assert result.column("row").to_pylist() == [10, 11, 12, 13, 14]


def test_zero_vector_cosine_ranks_last() -> None:
    table = vectors_table(np.array([[0.0, 0.0], [1.0, 1.0], [-1.0, 0.0]]))
    result = table.knn("vec", [1.0, 0.0], 3, "cosine_similarity")
    assert result.column("row").to_pylist() == [1, 2, 0]
    assert np.isnan(result.column("distances").to_pylist()[2])


def test_knn_resulting_columns_and_k() -> None:
    table = people()
    table.append_column("vec", pa.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    wanted = ["b"]
    result = table.knn("vec", [0.9, 0.9], 2, "euclidean", resulting_columns=wanted)
    assert result.column_names == ["b", "distances"] and result.column("b").to_pylist() == [
        "y",
        "x",
    ]
    assert wanted == ["b"]  # the caller's list is not changed
    assert table.knn("vec", [0, 0], 2, "euclidean", ["distances", "a"]).column_names == [
        "a",
        "distances",
    ]
    assert table.knn("vec", [0, 0], 99, "euclidean").num_rows == 3
    zero = table.knn("vec", [0, 0], 0, "euclidean")
    assert zero.num_rows == 0 and "distances" in zero.column_names
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="k must be"):
            table.knn("vec", [0, 0], bad, "euclidean")  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="no column 'nope'"):
        table.knn("vec", [0, 0], 1, "euclidean", ["nope"])


def test_knn_after_add_row_and_on_an_empty_table() -> None:
    table = MTable.from_schema(pa.schema([pa.field("vec", pa.list_(pa.float32(), 2))]))
    assert table.knn("vec", [1.0, 2.0], 3, "euclidean").num_rows == 0
    for i in range(20):
        table.add_row({"vec": [float(i), 0.0]})
    assert table.data.column("vec").num_chunks > 1
    result = table.knn("vec", [7.2, 0.0], 3, "euclidean")
    assert result.column("vec").to_pylist() == [[7.0, 0.0], [8.0, 0.0], [6.0, 0.0]]
    assert table.data.column("vec").num_chunks == 1  # joined once, for every later search


def test_search_errors_say_what_to_fix() -> None:
    table = people()
    table.append_column("vec", pa.array([[0.0, 0.0], [1.0, 1.0], [5.0, 5.0]]))
    with pytest.raises(ValueError, match="euclidean, manhattan, cosine_similarity, dot_product"):
        table.knn("vec", [0, 0], 1, "hamming")
    with pytest.raises(VectorSearchError, match="unknown metric"):
        table.apply_distance("vec", [0, 0], "hamming")
    with pytest.raises(KeyError, match="no column 'v'"):
        table.knn("v", [0, 0], 1, "euclidean")
    with pytest.raises(ValueError, match="3 values but column 'vec' holds 2-value"):
        table.knn("vec", [0, 0, 0], 1, "euclidean")
    with pytest.raises(ValueError, match="one vector"):
        table.knn("vec", [[0, 0]], 1, "euclidean")
    with pytest.raises(ValueError, match="not a vector column"):
        table.knn("b", [0, 0], 1, "euclidean")
    ragged = MTable.from_arrow(pa.table({"vec": pa.array([[0.0], [1.0, 2.0]])}))
    with pytest.raises(ValueError, match="different lengths"):
        ragged.knn("vec", [0.0], 1, "euclidean")
    holes = MTable.from_arrow(pa.table({"vec": pa.array([[0.0, 1.0], None])}))
    with pytest.raises(ValueError, match="null vector"):
        holes.knn("vec", [0.0, 1.0], 1, "euclidean")


def test_integer_and_sliced_vector_columns() -> None:
    table = MTable.from_arrow(pa.table({"vec": pa.array([[0, 0], [3, 4], [1, 1]])}))
    assert table.apply_distance("vec", [0, 0], "euclidean").column("distances").to_pylist() == [
        0.0,
        5.0,
        pytest.approx(2**0.5),
    ]
    sliced = vectors_table(np.arange(20.0).reshape(10, 2)).data.slice(3, 4)
    result = MTable.from_arrow(sliced).knn("vec", [8.0, 9.0], 1, "euclidean")
    assert result.column("row").to_pylist() == [4]


# -- pickling -----------------------------------------------------------------------


@pytest.mark.parametrize("dumps", [pickle.dumps, cloudpickle.dumps])
def test_pickle_round_trip_through_ipc(dumps) -> None:  # type: ignore[no-untyped-def]
    table = vectors_table(np.random.default_rng(1).standard_normal((100, 8)).astype(np.float32))
    table.identifier = "kept"
    copy = pickle.loads(dumps(table))
    assert isinstance(copy, MTable) and copy.data.equals(table.data)
    assert copy.data.schema == table.data.schema and copy.identifier == "kept"
    assert copy.filesystem is None
    copy.add_row({"vec": [0.0] * 8, "row": 100})  # a working table, not a frozen copy
    assert copy.data.num_rows == 101 and table.data.num_rows == 100


def test_pickle_with_a_filesystem_writes_parquet_and_keeps_only_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    big = vectors_table(np.random.default_rng(2).standard_normal((2000, 16)).astype(np.float32))
    big.filesystem = pafs.LocalFileSystem()
    blob = cloudpickle.dumps(big)
    [written] = (tmp_path / ".motion").glob("mtable_*.parquet")
    assert len(written.stem) == len("mtable_") + 24
    assert len(blob) < 2000 * 16 * 4 / 10  # the vectors are in the file, not in the pickle
    copy = pickle.loads(blob)
    assert copy.data.equals(big.data) and copy.identifier == str(written)
    assert isinstance(copy.filesystem, pafs.LocalFileSystem)
    pickle.loads(cloudpickle.dumps(copy))  # the path keeps its single .parquet suffix
    assert sorted(p.name for p in (tmp_path / ".motion").iterdir()) == [written.name]


def test_pickle_with_an_identifier_names_the_path(tmp_path: Path) -> None:
    table = people()
    table.filesystem = pafs.LocalFileSystem()
    table.identifier = str(tmp_path / "tables" / "people")
    copy = pickle.loads(cloudpickle.dumps(table))
    assert (tmp_path / "tables" / "people.parquet").exists()
    assert copy.data.equals(table.data) and copy.identifier == str(
        tmp_path / "tables/people.parquet"
    )
    # a SubTreeFileSystem: the identifier is a path inside it
    sub = pafs.SubTreeFileSystem(str(tmp_path), pafs.LocalFileSystem())
    table.filesystem, table.identifier = sub, "nested/t.parquet"
    assert pickle.loads(cloudpickle.dumps(table)).data.equals(table.data)
    assert (tmp_path / "nested" / "t.parquet").exists()


def test_mdataframe_pickles_through_arrow() -> None:
    df = MDataFrame({"value": [0, 1, 2], "name": ["a", "b", None]}, index=[10, 20, 30])
    state = df.__getstate__()
    assert set(state) == {"table"} and isinstance(state["table"], pa.Buffer)
    for dumps in (pickle.dumps, cloudpickle.dumps):
        copy = pickle.loads(dumps(df))
        assert isinstance(copy, MDataFrame)
        pd.testing.assert_frame_equal(copy, df)
    assert isinstance(df[df["value"] > 0], MDataFrame)  # derived frames pickle the same way
    mixed = MDataFrame({"odd": [1, "two", 3.0]})
    with pytest.raises(SerializationError, match=r"plain pandas\.DataFrame"):
        cloudpickle.dumps(mixed)


# -- packaging ----------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )


def test_import_motion_loads_no_table_library_and_names_resolve_lazily() -> None:
    out = _python(
        "import sys, motion\n"
        "print(sorted(m for m in ('pyarrow', 'pandas', 'numpy') if m in sys.modules))\n"
        "from motion import MTable, MDataFrame\n"
        "import motion.mtable, motion.df\n"
        "print(MTable is motion.mtable.MTable, MDataFrame is motion.df.MDataFrame)"
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["[]", "True True"]


@pytest.mark.parametrize("module", ["motion.mtable", "motion.df"])
def test_without_the_extra_the_import_names_the_pip_command(module: str) -> None:
    out = _python(
        "import sys; sys.modules['pyarrow'] = None\n"
        "from motion.errors import MissingDependencyError\n"
        f"try:\n    import {module}\n"
        "except MissingDependencyError as exc:\n    print('missing:', exc)"
    )
    assert out.returncode == 0, out.stderr
    assert "pyarrow is missing" in out.stdout
    assert "pip install -e '.[table]'" in out.stdout
    assert issubclass(MissingDependencyError, ImportError)


# -- in component state, on a real worker -------------------------------------------

sys.path.insert(0, str(COMPONENTS))


@pytest.mark.integration
@pytest.mark.parametrize("parquet", [False, True], ids=["ipc", "parquet"])
def test_update_ops_add_rows_on_a_worker_and_serve_runs_knn(  # type: ignore[no-untyped-def]
    redis_url, start_worker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, parquet: bool
):
    from vector_index import VectorIndex

    monkeypatch.setenv("HOME", str(tmp_path))
    start_worker(["vector_index"], pool="solo", concurrency=1, env={"HOME": str(tmp_path)})
    handle = VectorIndex("shelf", init_state_params={"parquet": parquet})
    points = {"east": [1, 0, 0], "north": [0, 1, 0], "up": [0, 0, 1], "far-east": [9, 0, 0]}
    for label, vec in points.items():
        handle.run("add", {"label": label, "vec": vec})
    handle.flush_update(timeout=60)
    table = handle.read_state("table")
    assert isinstance(table, MTable) and table.data.num_rows == 4
    assert handle.read_state("log")["label"].tolist() == list(points)
    near = handle.run("search", {"query": [0.9, 0.1, 0.0], "metric": "euclidean"})
    assert near.column_names == ["label", "distances"]
    assert near.column("label").to_pylist() == ["east", "north"]
    most = handle.run("search", {"query": [1, 0, 0], "metric": "dot_product", "k": 1})
    assert most.column("label").to_pylist() == ["far-east"]
    files = list((tmp_path / ".motion").glob("mtable_*.parquet"))
    assert bool(files) == parquet  # the parquet variant keeps the rows out of Redis


# -- the benchmark stays runnable -----------------------------------------------------


def test_knn_benchmark_small_run_agrees_with_numpy_and_keeps_its_section(tmp_path: Path) -> None:
    from benchmarks import knn

    results = tmp_path / "RESULTS.md"
    results.write_text("# Benchmark results\n\nthe main suite's table\n")
    args = ["--rows", "3000", "--dim", "16", "--repeats", "3", "--no-fastvs"]
    assert knn.main([*args, "--results", str(results), "--json", str(tmp_path / "k.json")]) == 0
    rows = json.loads((tmp_path / "k.json").read_text())["rows"]
    assert [r["metric"] for r in rows] == METRICS
    assert all(r["same_as_numpy"] == 3 and r["mtable_ms"] > 0 for r in rows)
    knn.main([*args, "--results", str(results)])  # a second run replaces the section
    text = results.read_text()
    assert text.startswith("# Benchmark results\n\nthe main suite's table\n")
    assert text.count(knn.BEGIN) == 1 and text.count("| euclidean |") == 1


@pytest.mark.skipif(
    not (ROOT / "benchmarks" / ".fastvs-venv" / "bin" / "python").exists(),
    reason="fastvs's virtualenv is made by the first `python -m benchmarks.knn`",
)
def test_same_rows_in_the_same_order_as_motions_fastvs() -> None:
    from benchmarks import knn

    rng = np.random.default_rng(11)
    matrix = rng.standard_normal((4000, 12), dtype=np.float32)
    queries = rng.standard_normal((3, 12), dtype=np.float32)
    table = vectors_table(matrix)
    for metric in METRICS:
        theirs = knn.run_fastvs(matrix, queries, 7, metric)["indices"]
        ours = [table.knn("vec", q, 7, metric).column("row").to_pylist() for q in queries]
        assert ours == theirs, metric
