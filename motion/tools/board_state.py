"""The dashboard's view of state values: each rendered by its type, edited, and diffed.

- a string as text, a list or dict as JSON, an ``MTable``, a pyarrow ``Table`` or a
  pandas ``DataFrame`` (``MDataFrame``) as an HTML table of its first
  :data:`TABLE_ROWS` rows, anything else by its ``repr``;
- an editor form for str, int, float, bool and JSON-exact list and dict values, and
  the parsing of what was typed back into a value of the same type;
- a line diff of two versions' values (what changed, added or removed per key).

Every value passes through :func:`esc` (nothing here emits markup from a value), and
no table library is imported: a value is recognised by the modules already loaded.

Tool; uses no I/O.
"""

from __future__ import annotations

import difflib
import html
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

#: the state value types the editor can change (bool before int: it is one)
EDITABLE = (str, bool, int, float, list, dict)
#: rows of a table value shown on the page
TABLE_ROWS = 50
#: characters of one table cell shown
CELL_CHARS = 200


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def table_of(value: Any) -> tuple[list[str], list[list[Any]], int] | None:
    """``(columns, first rows, total rows)`` of a table value (MTable, pyarrow Table,
    pandas DataFrame), or ``None`` for any other value."""
    if type(value).__name__ == "MTable" and hasattr(value, "data"):
        value = value.data
    pyarrow = sys.modules.get("pyarrow")
    if pyarrow is not None and isinstance(value, pyarrow.Table):
        rows = value.slice(0, TABLE_ROWS).to_pylist()
        columns = list(value.column_names)
        return columns, [[row[c] for c in columns] for row in rows], int(value.num_rows)
    pandas = sys.modules.get("pandas")
    if pandas is not None and isinstance(value, pandas.DataFrame):
        head = value.head(TABLE_ROWS)
        return [str(c) for c in value.columns], head.values.tolist(), len(value)
    return None


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return esc(text if len(text) <= CELL_CHARS else text[:CELL_CHARS] + "…")


def render_value(value: Any) -> str:
    """A state value for display, by type (see the module docs)."""
    if isinstance(value, str):
        return f"<pre>{esc(value)}</pre>"
    if isinstance(value, (list, dict)):
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = repr(value)
        return f"<pre>{esc(text)}</pre>"
    table = table_of(value)
    if table is not None:
        columns, rows, total = table
        head = "".join(f"<th>{esc(c)}</th>" for c in columns)
        body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r) + "</tr>" for r in rows)
        more = f"first {len(rows)} of {total} rows" if total > len(rows) else f"{total} rows"
        return (
            f'<table class="data"><tr>{head}</tr>{body}</table>'
            f'<p class="muted">{esc(more)}, {len(columns)} columns</p>'
        )
    return f"<pre>{esc(repr(value))}</pre>"


def as_text(value: Any) -> str:
    """A value as lines of text, for diffs: strings as they are, lists and dicts as
    JSON, tables as tab-separated rows, anything else by ``repr``."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)):
        try:
            return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
        except (TypeError, ValueError):
            return repr(value)
    table = table_of(value)
    if table is not None:
        columns, rows, total = table
        lines = ["\t".join(columns), *("\t".join(map(repr, r)) for r in rows)]
        return "\n".join([*lines, f"({total} rows)"])
    return repr(value)


def diff_html(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """What changed from ``old`` to ``new`` (two versions' states), key by key: a line
    diff of each changed value; keys equal in both are left out."""
    parts = []
    for key in sorted(set(old) | set(new)):
        if key in old and key in new and as_text(old[key]) == as_text(new[key]):
            continue
        before = as_text(old[key]).splitlines() if key in old else []
        after = as_text(new[key]).splitlines() if key in new else []
        what = "added" if key not in old else "removed" if key not in new else "changed"
        lines = []
        for line in difflib.unified_diff(before, after, lineterm="", n=2):
            if line.startswith(("---", "+++")):
                continue
            kind = {"+": "add", "-": "del", "@": "hunk"}.get(line[:1], "same")
            lines.append(f'<span class="{kind}">{esc(line)}</span>')
        parts.append(
            f'<div class="diff" data-key="{esc(key)}"><h3>{esc(key)} '
            f'<span class="muted">{what}</span></h3><pre>{"".join(lines)}</pre></div>'
        )
    return "".join(parts) or '<p class="muted">No state key differs between them.</p>'


def editable(value: Any) -> bool:
    """Whether the editor can change ``value`` (str, int, float, bool, a list or dict
    that JSON represents exactly)."""
    if isinstance(value, (list, dict)):  # only if JSON gives it back as it is (no int keys,
        try:  # tuples, sets, NaN...), so a save cannot change what was not edited
            return bool(json.loads(json.dumps(value, allow_nan=False)) == value)
        except (TypeError, ValueError):
            return False
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, EDITABLE)


def editor(component: str, instance_id: str, key: str, value: Any, csrf: str) -> str:
    """The form that saves a new value for ``key`` (an ordered ``write_state``)."""
    if isinstance(value, bool):
        options = "".join(
            f'<option value="{v}"{" selected" if value is (v == "true") else ""}>{v}</option>'
            for v in ("true", "false")
        )
        field = f'<select name="value">{options}</select>'
    elif isinstance(value, (int, float)):
        field = f'<input name="value" value="{esc(repr(value))}">'
    else:
        text = value if isinstance(value, str) else json.dumps(value, indent=2)
        field = f'<textarea name="value">{esc(text)}</textarea>'
    return (
        f'<form method="post" action="/instance/edit">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="component" value="{esc(component)}">'
        f'<input type="hidden" name="id" value="{esc(instance_id)}">'
        f'<input type="hidden" name="key" value="{esc(key)}">{field} '
        f"<button>Save</button></form>"
    )


def parse_edit(current: Any, raw: str) -> Any:
    """The new value typed for a key whose value is ``current`` (same type), or ValueError."""
    if isinstance(current, bool):
        if raw not in ("true", "false"):
            raise ValueError("choose true or false")
        return raw == "true"
    if isinstance(current, int):
        return int(raw.strip())
    if isinstance(current, float):
        number = float(raw.strip())
        if not math.isfinite(number):
            raise ValueError("give a finite number")
        return number
    if isinstance(current, str):
        return raw
    if isinstance(current, (list, dict)):
        value = json.loads(raw)
        if type(value) is not type(current):
            raise ValueError(f"give a JSON {type(current).__name__}")
        return value
    raise ValueError(f"a {type(current).__name__} value cannot be edited here")
