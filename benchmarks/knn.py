"""KNN benchmark: ``MTable.knn`` against Motion's fastvs and numpy brute force, in one run.

``python -m benchmarks.knn`` (options: ``--help``) makes 100,000 random 128-d float32
vectors (fixed seed), then for each metric times k=10 searches over the same query
points with:

- **MTable.knn** (this project) on a ``fixed_size_list<float32>[128]`` column, the
  whole call (search plus building the result table); again on a ``list<double>``
  column, the input fastvs reads;
- **fastvs 0.1.8** (what Motion 0.1.132's MTable calls), in its own virtualenv
  ``benchmarks/.fastvs-venv`` with the pyarrow it was built for (``pyarrow 14``,
  ``numpy<2``), run as a subprocess (``fastvs_driver.py``) on the same vectors as
  float64 (the only type fastvs takes);
- **numpy brute force**: the plain expression a user would write, then
  ``argpartition``.

Systems run one after the other, never at once, metric by metric; MTable.knn and
numpy take turns query by query. Each number is the median of the
repeats (one query point each, after one warm-up). The section it writes into
``benchmarks/RESULTS.md`` (with ``--results``) sits between two markers, so the main
suite's report keeps it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from benchmarks.harness import HERE, BenchError
from benchmarks.machine import describe
from motion.mtable import MTable

METRICS = ("euclidean", "manhattan", "cosine_similarity", "dot_product")
SIMILARITIES = ("cosine_similarity", "dot_product")
FASTVS = "fastvs==0.1.8"
# fastvs 0.1.8 declares no dependencies; its own pyproject asked for pyarrow ^14.
FASTVS_DEPS = ("pyarrow>=14,<15", "numpy<2", "pandas>=2.1,<2.2")
VENV = HERE / ".fastvs-venv"
PYTHON = VENV / "bin" / "python"
BEGIN, END = "<!-- knn:begin -->", "<!-- knn:end -->"

Search = Callable[[np.ndarray], np.ndarray]


def ensure_venv() -> Path:
    """The fastvs virtualenv's Python (created and filled on first use)."""
    probe = "import fastvs, pyarrow; print(pyarrow.__version__)"
    ok = PYTHON.exists() and subprocess.run([str(PYTHON), "-c", probe], capture_output=True)
    if ok and ok.returncode == 0:
        return PYTHON
    print(f"  installing {FASTVS} into {VENV} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(PYTHON), "-m", "pip", "install", "-q", FASTVS, *FASTVS_DEPS]
    out = subprocess.run(pip, capture_output=True, text=True, cwd="/")
    if out.returncode != 0:
        raise BenchError(f"could not install {FASTVS} into {VENV}:\n{out.stderr[-2000:]}")
    return PYTHON


def numpy_search(matrix: np.ndarray, metric: str, k: int) -> Search:
    """Brute force as plain numpy: the metric over every row, then argpartition."""

    def search(query: np.ndarray) -> np.ndarray:
        q = query.astype(matrix.dtype)
        if metric == "euclidean":
            values = np.linalg.norm(matrix - q, axis=1)
        elif metric == "manhattan":
            values = np.abs(matrix - q).sum(axis=1)
        elif metric == "dot_product":
            values = matrix @ q
        else:
            values = (matrix @ q) / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
        key = -values if metric in SIMILARITIES else values
        top = np.argpartition(key, k)[:k]
        return top[np.argsort(key[top], kind="stable")]

    return search


def mtable_search(table: MTable, metric: str, k: int) -> Search:
    """``MTable.knn`` returning the ``row`` column of its result."""

    def search(query: np.ndarray) -> np.ndarray:
        return table.knn("vec", query, k, metric).column("row").to_numpy()

    return search


def timed(searches: dict[str, Search], queries: np.ndarray) -> dict[str, tuple[list, list]]:
    """Seconds and result rows of each search per query, after one warm-up call each.

    The searches take turns on each query, so a change of load hits them alike.
    """
    for search in searches.values():
        search(queries[0])
    out: dict[str, tuple[list, list]] = {name: ([], []) for name in searches}
    for query in queries:
        for name, search in searches.items():
            start = time.perf_counter()
            rows = search(query)
            out[name][0].append(time.perf_counter() - start)
            out[name][1].append([int(i) for i in rows])
    return out


def run_fastvs(matrix: np.ndarray, queries: np.ndarray, k: int, metric: str) -> dict[str, Any]:
    """fastvs's seconds and results for ``metric``, from its own virtualenv."""
    python = ensure_venv()
    with tempfile.TemporaryDirectory() as tmp:
        data, points = Path(tmp) / "data.npy", Path(tmp) / "queries.npy"
        np.save(data, matrix)
        # the driver's warm-up: the first query once more in front
        np.save(points, np.concatenate([queries[:1], queries]))
        args = [str(python), str(HERE / "fastvs_driver.py"), str(data), str(points), str(k)]
        out = subprocess.run(
            [*args, str(len(queries) + 1), metric], capture_output=True, text=True, timeout=1800
        )
    if out.returncode != 0:
        raise BenchError(f"fastvs driver failed:\n{out.stderr[-2000:]}")
    entry: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])[metric]
    entry["seconds"], entry["indices"] = entry["seconds"][1:], entry["indices"][1:]
    return entry


def vector_tables(matrix: np.ndarray) -> tuple[MTable, MTable]:
    """The vectors as fixed_size_list<float32> and as list<double> (fastvs's input)."""
    rows, dim = matrix.shape
    ids = pa.array(np.arange(rows))
    fixed = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), dim)
    offsets = pa.array(np.arange(0, rows * dim + 1, dim, dtype=np.int32))
    listed = pa.ListArray.from_arrays(offsets, pa.array(matrix.astype(np.float64).ravel()))
    return (
        MTable.from_arrow(pa.table({"vec": fixed, "row": ids})),
        MTable.from_arrow(pa.table({"vec": listed, "row": ids})),
    )


def ms(seconds: list[float]) -> float:
    return 1000 * statistics.median(seconds)


def measure(args: argparse.Namespace) -> tuple[list[dict[str, Any]], str]:
    """Every system on every metric; the rows of the report and the load note."""
    rng = np.random.default_rng(2024)
    matrix = rng.standard_normal((args.rows, args.dim), dtype=np.float32)
    queries = rng.standard_normal((args.repeats, args.dim), dtype=np.float32)
    fixed, listed = vector_tables(matrix)
    load_before = os.getloadavg()[0]
    rows = []
    for metric in METRICS:  # all systems on one metric, then the next: load drifts less
        theirs = None if args.no_fastvs else run_fastvs(matrix, queries, args.k, metric)
        runs = timed(
            {
                "ours": mtable_search(fixed, metric, args.k),
                "ours64": mtable_search(listed, metric, args.k),
                "numpy": numpy_search(matrix, metric, args.k),
            },
            queries,
        )
        (ours, ours_found), (ours64, _), (brute, brute_found) = runs.values()
        row: dict[str, Any] = {
            "metric": metric,
            "mtable_ms": ms(ours),
            "mtable_f64_ms": ms(ours64),
            "numpy_ms": ms(brute),
            "same_as_numpy": sum(a == b for a, b in zip(ours_found, brute_found, strict=True)),
        }
        if theirs is not None:
            row["fastvs_ms"] = ms(theirs["seconds"])
            row["same_as_fastvs"] = sum(
                a == b for a, b in zip(ours_found, theirs["indices"], strict=True)
            )
        rows.append(row)
    load = f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after (1 min)"
    return rows, load


def report(rows: list[dict[str, Any]], args: argparse.Namespace, load: str) -> str:
    """The Markdown section: one line per metric."""
    info = describe("n/a")
    head = (
        f"## KNN: MTable.knn vs fastvs vs numpy\n\n"
        f"Command: `.venv/bin/python -m benchmarks.knn --results benchmarks/RESULTS.md` "
        f"({info['date']}, commit {info['commit']}, {info['nproc']} cores {info['cpu']}, "
        f"{load}).\n\n"
        f"k={args.k} over {args.rows:,} rows of {args.dim}-d float32, median of "
        f"{args.repeats} queries (one warm-up), milliseconds per call. MTable.knn on a "
        f"`fixed_size_list<float32>[{args.dim}]` column and on a `list<double>` column; "
        "fastvs 0.1.8 (pyarrow 14, its own virtualenv) on the same vectors as float64 "
        "`list<double>` (it takes no other type); numpy: the plain expression plus "
        '`argpartition`. Ratio: MTable.knn (float32) / fastvs. "Same top-k": queries '
        "whose k rows, in order, equal the other system's.\n\n"
        "| metric | MTable.knn | MTable.knn (list<double>) | fastvs | numpy | ratio | "
        "target | met | same top-k as fastvs | same top-k as numpy |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for row in rows:
        fastvs = row.get("fastvs_ms")
        ratio = row["mtable_ms"] / fastvs if fastvs else float("nan")
        met = "n/a" if fastvs is None else ("yes" if ratio <= 1.0 else "NO")
        lines.append(
            f"| {row['metric']} | {row['mtable_ms']:.2f} | {row['mtable_f64_ms']:.2f} | "
            f"{'n/a' if fastvs is None else f'{fastvs:.2f}'} | {row['numpy_ms']:.2f} | "
            f"{ratio:.2f}x | <= 1.0x fastvs | {met} | "
            f"{row.get('same_as_fastvs', 'n/a')}/{args.repeats} | "
            f"{row['same_as_numpy']}/{args.repeats} |"
        )
    return head + "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put ``section`` between the knn markers of ``path`` (replacing an older one)."""
    text = path.read_text() if path.exists() else ""
    block = f"{BEGIN}\n{section}{END}\n"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        text = before + block + rest.split(END, 1)[1].lstrip("\n")
    else:
        text = text.rstrip("\n") + "\n\n" + block
    path.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.knn", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-fastvs", action="store_true", help="skip fastvs (no venv)")
    parser.add_argument("--results", type=Path, help="write the section into this file")
    parser.add_argument("--json", type=Path, help="also write the numbers as JSON")
    args = parser.parse_args(argv)
    rows, load = measure(args)
    section = report(rows, args, load)
    print(section)
    if args.results:
        write_section(args.results, section)
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "load": load}, indent=2))
    wrong = [r["metric"] for r in rows if r["same_as_numpy"] < args.repeats // 2]
    if wrong:
        print(f"MTable.knn disagrees with numpy on most queries for: {wrong}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
