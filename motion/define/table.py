"""Motion's Arrow-backed state types: :class:`MTable` and :class:`MDataFrame`.

Owns how a table lives in component state: an :class:`MTable` wraps a
``pyarrow.Table`` and pickles (motion stores state with cloudpickle) as Arrow IPC,
or, when a pyarrow filesystem is set, as a parquet file there with only its path
in the state; an :class:`MDataFrame` is a ``pandas.DataFrame`` that pickles as
Arrow IPC. Vector search is in :mod:`motion.define.vectors`. Uses the floor only
(:mod:`motion.errors`); needs the ``table`` extra (pyarrow, pandas, numpy).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from typing import Any

from motion.floor.errors import (
    ColumnError,
    ColumnNotFoundError,
    MissingDependencyError,
    SerializationError,
    TableConstructionError,
    TableIndexError,
    TableTypeError,
    install_hint,
)

INSTALL_HINT = install_hint("table")

try:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.fs as pafs
    import pyarrow.parquet as pq
except ImportError as exc:  # the table extra is optional
    raise MissingDependencyError(
        f"MTable and MDataFrame need pyarrow, pandas and numpy ({exc.name} is missing); "
        f"install them with: {INSTALL_HINT}"
    ) from exc

from motion.define import vectors  # noqa: E402  (after the check that names the missing extra)

__all__ = ["MDataFrame", "MTable"]

DISTANCES = "distances"


def _to_ipc(table: pa.Table) -> pa.Buffer:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def _from_ipc(buffer: Any) -> pa.Table:
    return pa.ipc.open_stream(buffer).read_all()


def _field_name(field: str | pa.Field) -> str:
    return field.name if isinstance(field, pa.Field) else str(field)


class MTable:
    """A ``pyarrow.Table`` in component state, with row/column edits and exact vector search.

    Create one with :meth:`from_pandas`, :meth:`from_arrow` or :meth:`from_schema`;
    ``MTable(...)`` itself raises :class:`~motion.errors.TableConstructionError`
    (a ``NotImplementedError``), as in Motion. Edits replace :attr:`data` with a new
    table (Arrow tables are immutable), so a table read from state can be edited and
    written back. Example::

        table = MTable.from_arrow(pa.table({"vec": vectors, "label": labels}))
        table.add_row({"vec": [0.1, 0.2], "label": "new"})
        table.knn("vec", [0.1, 0.2], k=5, metric="cosine_similarity")
    """

    _data: pa.Table
    _filesystem: pafs.FileSystem | None
    _identifier: str | None

    def __init__(
        self,
        data: pa.Table | None = None,
        filesystem: pafs.FileSystem | None = None,
        identifier: str | None = None,
        external: bool = True,
    ) -> None:
        if external:
            raise TableConstructionError(
                "create an MTable with MTable.from_pandas(df), MTable.from_arrow(table) "
                "or MTable.from_schema(schema), not MTable(...)."
            )
        self.data = data
        self.filesystem = filesystem
        self.identifier = identifier

    @classmethod
    def from_pandas(cls, df: pd.DataFrame) -> MTable:
        """An MTable of ``df`` (converted with ``pa.Table.from_pandas``; may copy)."""
        return cls(pa.Table.from_pandas(df), external=False)

    @classmethod
    def from_arrow(cls, data: pa.Table) -> MTable:
        """An MTable wrapping ``data`` (zero-copy)."""
        return cls(data, external=False)

    @classmethod
    def from_schema(cls, schema: pa.Schema) -> MTable:
        """An empty MTable with ``schema``."""
        return cls(schema.empty_table(), external=False)

    @property
    def data(self) -> pa.Table:
        """The wrapped ``pyarrow.Table``; assign a new table to replace it."""
        return self._data

    @data.setter
    def data(self, data: pa.Table) -> None:
        if not isinstance(data, pa.Table):
            raise TableTypeError(f"MTable.data must be a pyarrow.Table, got {type(data).__name__}.")
        self._data = data

    @property
    def filesystem(self) -> pafs.FileSystem | None:
        """A pyarrow filesystem; when set, pickling writes the table there as parquet.

        The state then holds only the file's path (see :attr:`identifier`), so a large
        table does not travel through Redis. For an fsspec filesystem wrap it:
        ``pa.fs.PyFileSystem(pa.fs.FSSpecHandler(fs))``.
        """
        return self._filesystem

    @filesystem.setter
    def filesystem(self, filesystem: pafs.FileSystem | None) -> None:
        if filesystem is not None and not isinstance(filesystem, pafs.FileSystem):
            raise TableTypeError(
                f"MTable.filesystem must be a pyarrow.fs.FileSystem, got "
                f"{type(filesystem).__name__}; wrap an fsspec filesystem with "
                "pa.fs.PyFileSystem(pa.fs.FSSpecHandler(fs))."
            )
        self._filesystem = filesystem

    @property
    def identifier(self) -> str | None:
        """The parquet path used with :attr:`filesystem` (``.parquet`` is appended if absent).

        Unset, each pickling writes a new ``~/.motion/mtable_<hex>.parquet`` (so every
        stored state version keeps its own file; motion never deletes them).
        """
        return self._identifier

    @identifier.setter
    def identifier(self, identifier: str | None) -> None:
        self._identifier = identifier

    # -- pickling ---------------------------------------------------------------

    def _parquet_path(self) -> str:
        if self._identifier:
            path = self._identifier
        else:
            prefix = os.path.join(os.path.expanduser("~"), ".motion")
            path = os.path.join(prefix, f"mtable_{secrets.token_hex(12)}")
        return path if path.endswith(".parquet") else path + ".parquet"

    def __getstate__(self) -> dict[str, Any]:
        if self._filesystem is None:
            return {"data": _to_ipc(self._data), "identifier": self._identifier, "filesystem": None}
        path = self._parquet_path()
        parent = os.path.dirname(path)
        if parent:
            self._filesystem.create_dir(parent, recursive=True)
        pq.write_table(self._data, path, filesystem=self._filesystem)
        return {"data": None, "identifier": path, "filesystem": self._filesystem}

    def __setstate__(self, state: dict[str, Any]) -> None:
        filesystem = state.get("filesystem")
        if filesystem is not None:
            data = pq.read_table(state["identifier"], filesystem=filesystem)
        else:
            data = _from_ipc(state["data"])
        self._data, self._filesystem, self._identifier = data, filesystem, state.get("identifier")

    # -- rows and columns -------------------------------------------------------

    def add_row(self, row: dict[str, Any]) -> None:
        """Append one row; ``row`` maps every column name to its value (extra keys ignored).

        Raises:
            ColumnNotFoundError: (a ``KeyError``) ``row`` lacks a column.
            TableTypeError: (a ``TypeError``) a value does not fit its column's type.
        """
        schema = self._data.schema
        missing = [name for name in schema.names if name not in row]
        if missing:
            raise ColumnNotFoundError(
                f"the row has no value for column(s) {', '.join(map(repr, missing))}; "
                f"an MTable row needs every column: {', '.join(schema.names)}."
            )
        try:
            new = pa.Table.from_pydict({f.name: [row[f.name]] for f in schema}, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
            raise TableTypeError(f"the row does not fit the table's schema: {exc}") from exc
        self._data = pa.concat_tables([self._data, new])

    def remove_row(self, i: int) -> pa.Table:
        """Remove row ``i`` (``0 <= i < num_rows``) and return the new :attr:`data`.

        Motion returned the new table without changing the MTable; this also keeps it,
        so ``table.data = table.remove_row(i)`` (Motion's idiom) still works.

        Raises:
            TableIndexError: (an ``IndexError``) ``i`` is out of range.
        """
        rows = self._data.num_rows
        if not 0 <= i < rows:
            raise TableIndexError(f"row index {i} is out of range for a table of {rows} rows.")
        self._data = pa.concat_tables([self._data.slice(0, i), self._data.slice(i + 1)])
        return self._data

    def add_column(self, i: int, field_: str | pa.Field, column: Any) -> None:
        """Insert ``column`` (an array, chunked array or list) at position ``i``.

        Raises:
            ColumnError: (a ``ValueError``) the name is taken, or the column does not fit.
        """
        self._data = self._with_column(i, field_, column)

    def append_column(self, field_: str | pa.Field, column: Any) -> None:
        """Add ``column`` after the last column; raises as :meth:`add_column`."""
        self._data = self._with_column(self._data.num_columns, field_, column)

    def _with_column(self, i: int, field_: str | pa.Field, column: Any) -> pa.Table:
        name = _field_name(field_)
        if name in self._data.column_names:
            raise ColumnError(f"column {name!r} already exists; remove it first or pick a name.")
        if not 0 <= i <= self._data.num_columns:
            raise TableIndexError(
                f"column position {i} is out of range for a table of "
                f"{self._data.num_columns} columns."
            )
        try:
            return self._data.add_column(i, field_, column)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
            raise ColumnError(f"column {name!r} cannot be added: {exc}") from exc

    def remove_column(self, i: int) -> None:
        """Remove the column at position ``i``; :class:`TableIndexError` if out of range."""
        columns = self._data.num_columns
        if not 0 <= i < columns:
            raise TableIndexError(f"column index {i} is out of range for {columns} columns.")
        self._data = self._data.remove_column(i)

    def remove_column_by_name(self, name: str) -> None:
        """Remove column ``name``; :class:`ColumnNotFoundError` (a ``KeyError``) if absent."""
        self.remove_column(self._column_index(name))

    def _column_index(self, name: str) -> int:
        index = self._data.schema.get_field_index(name)
        if index < 0:
            raise ColumnNotFoundError(
                f"no column {name!r}; the table has {', '.join(self._data.column_names)}."
            )
        return int(index)

    # -- vector search ----------------------------------------------------------

    def _matrix(self, vector_column_name: str) -> Any:
        if self._data.column(self._column_index(vector_column_name)).num_chunks > 1:
            # Rows added one by one are chunks; join them once so every later search
            # reads the vectors zero-copy.
            self._data = self._data.combine_chunks()
        return vectors.vector_matrix(self._data, vector_column_name)

    def _distances(self, vector_column_name: str, query_point: Any, metric: str) -> Any:
        metric = vectors.check_metric(metric)
        matrix = self._matrix(vector_column_name)
        query = vectors.query_vector(query_point, matrix, vector_column_name)
        return vectors.distances(matrix, query, metric)

    def knn(
        self,
        vector_column_name: str,
        query_point: Any,
        k: int,
        metric: str,
        resulting_columns: Sequence[str] | None = None,
    ) -> pa.Table:
        """The ``k`` rows nearest ``query_point``, best first, plus a float64 ``distances`` column.

        Args:
            vector_column_name: a list or fixed-size-list column of floats (one vector a row).
            query_point: a list or 1-d array as long as the vectors.
            k: how many rows (fewer if the table is smaller).
            metric: ``euclidean`` or ``manhattan`` (smallest first), ``cosine_similarity``
                or ``dot_product`` (largest first; ``distances`` holds the similarity).
                ``inner_product`` is accepted for ``dot_product``.
            resulting_columns: the columns to return (``distances`` is always added);
                all columns when empty.

        Raises:
            VectorSearchError: (a ``ValueError``) unknown metric (the message names the
                valid ones), bad ``k``, or a query or column that cannot be searched.
            ColumnNotFoundError: (a ``KeyError``) an unknown column name.
        """
        vectors.check_k(k)
        values = self._distances(vector_column_name, query_point, metric)
        rows = vectors.nearest(values, k, metric)
        source = self._data
        if resulting_columns:
            wanted = [c for c in resulting_columns if c != DISTANCES]
            source = source.select([self._column_index(c) for c in wanted])
        return source.take(pa.array(rows)).append_column(
            pa.field(DISTANCES, pa.float64()), pa.array(values[rows])
        )

    def apply_distance(self, vector_column_name: str, query_point: Any, metric: str) -> pa.Table:
        """Every row, in table order, plus a float64 ``distances`` column (see :meth:`knn`)."""
        values = self._distances(vector_column_name, query_point, metric)
        return self._data.append_column(pa.field(DISTANCES, pa.float64()), pa.array(values))

    def __len__(self) -> int:
        return int(self._data.num_rows)

    def __repr__(self) -> str:
        where = f", parquet on {type(self._filesystem).__name__}" if self._filesystem else ""
        return f"MTable({self._data.num_rows} rows, columns {self._data.column_names}{where})"


class MDataFrame(pd.DataFrame):  # type: ignore[misc]  # pandas ships no type information
    """A ``pandas.DataFrame`` that pickles as Arrow IPC, for component state.

    Use it wherever a DataFrame goes into state; derived frames (``df[...]``,
    ``df.head()``) stay MDataFrames. A column Arrow cannot hold (mixed Python
    objects) fails at pickling with a :class:`~motion.errors.SerializationError`.
    Example::

        @C.init_state
        def setup():
            return {"df": MDataFrame({"value": [0, 1, 2]})}
    """

    @property
    def _constructor(self) -> type[MDataFrame]:
        return MDataFrame

    def __getstate__(self) -> dict[str, Any]:
        try:
            table = pa.Table.from_pandas(self)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
            raise SerializationError(
                f"this MDataFrame cannot be stored as Arrow ({exc}); make the column "
                "one type, or keep such data in a plain pandas.DataFrame."
            ) from exc
        return {"table": _to_ipc(table)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        pd.DataFrame.__init__(self, _from_ipc(state["table"]).to_pandas())
