"""Exact vector search over an Arrow vector column: distances and the k nearest rows.

Owns the arithmetic behind :meth:`motion.define.table.MTable.knn` and
:meth:`~motion.define.table.MTable.apply_distance`: a zero-copy numpy view of a list,
large-list or fixed-size-list column of floats, the four metrics, and top-k
selection in the order Motion's ``fastvs`` returned. Rows are processed in blocks
that fit in cache, so no full-size temporary is allocated. Uses numpy and pyarrow
only, and of motion only :mod:`motion.errors` (the floor).

Order, as in fastvs: ``euclidean`` and ``manhattan`` are distances (smallest
first); ``cosine_similarity`` and ``dot_product`` are similarities (largest
first), reported as the similarity itself, not negated. Ties keep row order. A
row whose value is undefined (the cosine of a zero vector: NaN) comes last, where
fastvs panicked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from motion.floor.errors import ColumnNotFoundError, VectorSearchError

METRICS = ("euclidean", "manhattan", "cosine_similarity", "dot_product")
# fastvs's own name for the dot product (Motion documented "dot_product").
ALIASES = {"inner_product": "dot_product"}
SIMILARITIES = frozenset({"cosine_similarity", "dot_product"})

_BLOCK_BYTES = 1 << 20  # rows per block: about 1 MiB of vectors, so a block stays in cache

Matrix = npt.NDArray[np.floating[Any]]
Kernel = Callable[[Matrix, Matrix, Matrix], Matrix]


def check_metric(metric: str) -> str:
    """The canonical name of ``metric``; :class:`VectorSearchError` naming the valid ones."""
    name = ALIASES.get(metric, metric)
    if name not in METRICS:
        raise VectorSearchError(f"unknown metric {metric!r}: use one of {', '.join(METRICS)}.")
    return name


def check_k(k: int) -> None:
    """:class:`VectorSearchError` unless ``k`` is a non-negative integer."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise VectorSearchError(f"k must be a non-negative integer, got {k!r}.")


def _chunk_matrix(chunk: pa.Array, column_name: str) -> Matrix:
    """One chunk of a vector column as an ``(n, d)`` array, without copying floats."""
    kind = chunk.type
    if not (
        pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    ):
        raise VectorSearchError(
            f"column {column_name!r} is {kind}, not a vector column: store each vector as a "
            "list (pa.list_(pa.float32(), d) or a list of floats)."
        )
    if chunk.null_count:
        raise VectorSearchError(f"column {column_name!r} has {chunk.null_count} null vector(s).")
    if pa.types.is_fixed_size_list(kind):
        dim = kind.list_size
    elif len(chunk) == 0:
        dim = 0
    else:
        offsets = np.asarray(chunk.offsets)
        lengths = np.diff(offsets)
        dim = int(lengths[0])
        if np.any(lengths != dim):
            raise VectorSearchError(
                f"column {column_name!r} holds vectors of different lengths "
                f"({lengths.min()} to {lengths.max()}); every vector needs the same length."
            )
    values = chunk.flatten()  # a zero-copy slice of the child array when there are no nulls
    if values.null_count:
        raise VectorSearchError(f"column {column_name!r} has null values inside its vectors.")
    if pa.types.is_floating(values.type):
        flat = values.to_numpy(zero_copy_only=True)
        if flat.dtype == np.float16:  # too coarse to accumulate in
            flat = flat.astype(np.float32)
    elif pa.types.is_integer(values.type):
        flat = values.to_numpy().astype(np.float64)
    else:
        raise VectorSearchError(f"column {column_name!r} holds {values.type} values, not numbers.")
    return flat.reshape(len(chunk), dim) if dim else np.empty((len(chunk), 0), flat.dtype)


def vector_matrix(table: pa.Table, column_name: str) -> Matrix:
    """The vector column ``column_name`` of ``table`` as an ``(n, d)`` numpy array.

    Zero-copy when the column is one chunk (see :meth:`MTable.knn`, which keeps it so).

    Raises:
        ColumnNotFoundError: (a ``KeyError``) no such column.
        VectorSearchError: (a ``ValueError``) not a list column of numbers, null
            vectors, or vectors of different lengths.
    """
    if column_name not in table.column_names:
        raise ColumnNotFoundError(
            f"no column {column_name!r}; the table has {', '.join(table.column_names)}."
        )
    column = table.column(column_name)
    chunks = column.chunks
    if len(chunks) == 1:
        return _chunk_matrix(chunks[0], column_name)
    if not chunks:
        return np.empty((0, 0), np.float64)
    return _chunk_matrix(column.combine_chunks(), column_name)


def query_vector(query_point: Any, matrix: Matrix, column_name: str) -> Matrix:
    """``query_point`` as a 1-d array of ``matrix``'s dtype; it must match the width."""
    query = np.asarray(query_point, dtype=np.float64)
    if query.ndim != 1:
        raise VectorSearchError(f"query_point must be one vector, got shape {query.shape}.")
    if len(matrix) and matrix.shape[1] != len(query):
        raise VectorSearchError(
            f"query_point has {len(query)} values but column {column_name!r} holds "
            f"{matrix.shape[1]}-value vectors."
        )
    return query.astype(matrix.dtype, copy=False)


def _euclidean(block: Matrix, query: Matrix, scratch: Matrix) -> Matrix:
    np.subtract(block, query, out=scratch)
    squared: Matrix = np.einsum("ij,ij->i", scratch, scratch)  # the root is taken once at the end
    return squared


def _manhattan(block: Matrix, query: Matrix, scratch: Matrix) -> Matrix:
    np.subtract(block, query, out=scratch)
    np.abs(scratch, out=scratch)
    total: Matrix = scratch.sum(axis=1)
    return total


def _cosine(block: Matrix, query: Matrix, scratch: Matrix) -> Matrix:
    norms: Matrix = np.sqrt(np.einsum("ij,ij->i", block, block))
    cosines: Matrix = (block @ query) / norms  # divided by |query| once at the end
    return cosines


# Computed block by block (a block stays in cache; x - q goes into one small scratch
# array, so no (n, d) temporary is made). The dot product is one BLAS call instead.
_BLOCKED: dict[str, Kernel] = {
    "euclidean": _euclidean,
    "manhattan": _manhattan,
    "cosine_similarity": _cosine,
}


def distances(matrix: Matrix, query: Matrix, metric: str) -> npt.NDArray[np.float64]:
    """The ``metric`` value of every row of ``matrix`` against ``query``, as float64."""
    metric = check_metric(metric)
    rows, dim = matrix.shape
    if rows == 0:
        return np.empty(0, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        if metric == "dot_product":
            return (matrix @ query).astype(np.float64)
        out = np.empty(rows, dtype=np.float64)
        step = max(1, _BLOCK_BYTES // max(1, dim * matrix.itemsize))
        scratch = np.empty((min(step, rows), dim), dtype=matrix.dtype)
        kernel = _BLOCKED[metric]
        for start in range(0, rows, step):
            block = matrix[start : start + step]
            out[start : start + len(block)] = kernel(block, query, scratch[: len(block)])
        if metric == "euclidean":
            np.sqrt(out, out=out)
        elif metric == "cosine_similarity":
            out /= float(np.linalg.norm(query.astype(np.float64)))
    return out


def nearest(values: npt.NDArray[np.float64], k: int, metric: str) -> npt.NDArray[np.intp]:
    """Indices of the ``k`` best rows by ``values`` (from :func:`distances`), best first.

    Smallest first for distances, largest first for similarities; ties in row
    order; NaN last. Selection is ``O(n)`` (``argpartition``), only the winners are sorted.
    """
    check_k(k)
    key = -values if check_metric(metric) in SIMILARITIES else values
    undefined = np.isnan(key)
    if undefined.any():
        key = np.where(undefined, np.inf, key)
    count = min(int(k), len(key))
    if count == 0:
        return np.empty(0, dtype=np.intp)
    if count < len(key):
        cut = key[np.argpartition(key, count - 1)[count - 1]]
        candidates = np.flatnonzero(key <= cut)  # every row tied with the k-th is a candidate
    else:
        candidates = np.arange(len(key))
    order = np.lexsort((candidates, key[candidates], undefined[candidates]))
    return candidates[order[:count]]
