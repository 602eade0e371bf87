"""The dashboard's HTML: pages rendered on the server, no script, no build step.

Every value that comes from users, Redis or the request (component and instance
names, state keys and values, messages) goes through :func:`esc` before it
reaches the page, and the pages carry no JavaScript at all, so a state value
holding ``<script>`` is shown as text and never run (the dashboard also sends a
Content-Security-Policy that allows no script). Owns no I/O: the pages are
built from plain values that :mod:`motion.tools.board` reads through the library.

Tool; uses tools (browse).
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from motion.floor.wakeup import flow_label
from motion.tools.browse import Summary
from motion.tools.names import Page

#: the state value types the editor can change (bool before int: it is one)
EDITABLE = (str, bool, int, float, list, dict)

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:.6em 1.2em;display:flex;gap:1em;
align-items:center}header a{color:#fff;text-decoration:none;font-weight:600}
header form{margin-left:auto}main{padding:1em 1.2em;max-width:72em}
table{border-collapse:collapse;background:#fff;width:100%}
td,th{border:1px solid #d8dce3;padding:.35em .6em;text-align:left;vertical-align:top}
th{background:#eef0f4}pre{margin:0;white-space:pre-wrap;word-break:break-word}
.note{background:#fff8db;border:1px solid #e8d48b;padding:.5em .8em;margin:.6em 0}
.error{background:#fde8e8;border-color:#e3a0a0}.muted{color:#6b7280}
textarea{width:100%;min-height:4em;font:13px monospace}button{cursor:pointer}
"""


def esc(value: Any) -> str:
    """``value`` as text safe inside HTML elements and quoted attributes."""
    return html.escape(str(value), quote=True)


def link(path: str, **params: Any) -> str:
    """An escaped URL for an ``href`` attribute: ``path`` with query ``params``."""
    query = urlencode({k: v for k, v in params.items() if v not in (None, "")})
    return esc(f"{path}?{query}" if query else path)


#: seconds between reloads of a watched instance page (``watch=1``)
WATCH_SECONDS = 2


def page(title: str, body: str, *, csrf: str = "", signed_in: bool = False, reload: int = 0) -> str:
    """A whole page around ``body`` (already escaped HTML); ``reload``: seconds after
    which the browser loads it again (a meta refresh: no script needed)."""
    logout = ""
    if signed_in:
        logout = (
            f'<form method="post" action="/logout"><input type="hidden" name="csrf" '
            f'value="{esc(csrf)}"><button>Sign out</button></form>'
        )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        + (f'<meta http-equiv="refresh" content="{int(reload)}">' if reload > 0 else "")
        + f"<title>{esc(title)} · motion</title><style>{_STYLE}</style></head><body>"
        f'<header><a href="/">motion dashboard</a>{logout}</header>'
        f"<main>{body}</main></body></html>"
    )


def notice(message: str, error: bool = False) -> str:
    """A highlighted message (escaped)."""
    if not message:
        return ""
    return f'<p class="note{" error" if error else ""}">{esc(message)}</p>'


def login_form(message: str = "") -> str:
    """The sign-in form (the operator types ``MOTION_DASHBOARD_KEY``)."""
    return (
        f"<h1>Sign in</h1>{notice(message, error=bool(message))}"
        f'<form method="post" action="/login"><label>Dashboard key '
        f'<input type="password" name="key" autocomplete="current-password" autofocus>'
        f"</label> <button>Sign in</button></form>"
    )


def components_page(rows: Sequence[tuple[str, Mapping[str, Mapping[str, int]]]]) -> str:
    """The home page: each component with its per-flow counters."""
    if not rows:
        return "<h1>Components</h1><p>No component has an instance yet.</p>"
    lines = []
    for name, flows in rows:
        counts = "".join(
            f"<li>{esc(flow_label(flow))}: "
            + ", ".join(f"{esc(kind)} {int(n)}" for kind, n in sorted(c.items()))
            + "</li>"
            for flow, c in flows.items()
        )
        lines.append(
            f'<tr><td><a href="{link("/component", name=name)}">{esc(name)}</a></td>'
            f"<td><ul>{counts or '<li class=muted>no updates yet</li>'}</ul></td></tr>"
        )
    return (
        "<h1>Components</h1><table><tr><th>component</th><th>updates per flow</th></tr>"
        + "".join(lines)
        + "</table>"
    )


def instances_page(component: str, prefix: str, listing: Page, size: int) -> str:
    """A page of a component's instances, with the prefix search box."""
    search = (
        f'<form method="get" action="/component"><input type="hidden" name="name" '
        f'value="{esc(component)}"><label>Instance id starts with '
        f'<input name="prefix" value="{esc(prefix)}"></label> <button>Search</button></form>'
    )
    rows = "".join(
        f'<li><a href="{link("/instance", component=component, id=i)}">{esc(i)}</a></li>'
        for i in listing.ids
    )
    more = ""
    if listing.next_cursor:
        href = link(
            "/component", name=component, prefix=prefix, cursor=listing.next_cursor, size=size
        )
        more = f'<p><a href="{href}">Next page</a></p>'
    found = f"<ul>{rows}</ul>" if rows else "<p>No instance on this page.</p>"
    return f"<h1>{esc(component)}</h1>{search}{found}{more}"


def render_value(value: Any) -> str:
    """A state value for display: text for str, JSON for list/dict, else its repr."""
    if isinstance(value, str):
        return f"<pre>{esc(value)}</pre>"
    if isinstance(value, (list, dict)):
        try:
            text = json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError):
            text = repr(value)
        return f"<pre>{esc(text)}</pre>"
    return f"<pre>{esc(repr(value))}</pre>"


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


def _editor(component: str, instance_id: str, key: str, value: Any, csrf: str) -> str:
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


def instance_page(
    component: str,
    instance_id: str,
    info: Summary,
    state: Mapping[str, Any],
    flows: Mapping[str, Mapping[str, int]],
    *,
    csrf: str,
    read_only: bool,
    message: str = "",
    error: bool = False,
    watching: bool = False,
) -> str:
    """An instance: its counters, its state by type, and an editor per editable key;
    ``watching``: the page reloads itself (see :data:`WATCH_SECONDS`), with a link to stop."""
    facts = (
        f'<p id="facts">version <b id="version">{info.version}</b> · updates enqueued '
        f'<span id="seq">{info.seq}</span>, applied <span id="applied">{info.applied}</span>, '
        f'pending <span id="pending">{info.pending}</span> · failure records '
        f'<span id="failures">{info.failures}</span></p>'
    )
    here = link("/instance", component=component, id=instance_id)
    if watching:
        watch = (
            f'<p class="muted">Reloading every {WATCH_SECONDS} s to show new versions. '
            f'<a id="watch" href="{here}">Stop watching</a> (to edit a value)</p>'
        )
    else:
        href = link("/instance", component=component, id=instance_id, watch=1)
        watch = f'<p><a id="watch" href="{href}">Watch</a> (reload as versions commit)</p>'
    editing = not read_only and not watching  # a reloading page would lose what is typed
    rows = []
    for key, value in sorted(state.items()):
        edit = ""
        if editing and editable(value):
            edit = _editor(component, instance_id, key, value, csrf)
        rows.append(
            f'<tr data-key="{esc(key)}"><td>{esc(key)}</td>'
            f"<td>{esc(type(value).__name__)}</td>"
            f"<td>{render_value(value)}{edit}</td></tr>"
        )
    table = "<table><tr><th>key</th><th>type</th><th>value</th></tr>" + "".join(rows) + "</table>"
    mode = '<p class="muted">Read-only dashboard: editing is off.</p>' if read_only else ""
    counts = "".join(
        f"<li>{esc(flow_label(flow))}: "
        + ", ".join(f"{esc(k)} {int(n)}" for k, n in sorted(c.items()))
        + "</li>"
        for flow, c in flows.items()
    )
    back = f'<a href="{link("/component", name=component)}">{esc(component)}</a>'
    return (
        f"<p>{back}</p><h1>{esc(instance_id)}</h1>{notice(message, error)}{facts}{watch}{mode}"
        f"{table}<h2>Updates of {esc(component)} per flow</h2>"
        f"<ul>{counts or '<li class=muted>none yet</li>'}</ul>"
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
