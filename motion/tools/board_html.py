"""The dashboard's HTML: pages rendered on the server, no script, no build step.

Every value that comes from users, Redis or the request (component and instance
names, state keys and values, messages) goes through :func:`esc` before it
reaches the page, and the pages carry no JavaScript at all, so a state value
holding ``<script>`` is shown as text and never run (the dashboard also sends a
Content-Security-Policy that allows no script). Owns no I/O: the pages are
built from plain values that :mod:`motion.tools.board` reads through the library.

Tool; uses tools (board_state, names).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

from motion.floor.wakeup import flow_label
from motion.tools.board_state import esc
from motion.tools.names import Page

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
.diff .add{background:#e6f4ea;display:block}.diff .del{background:#fde8e8;display:block}
.diff .hunk{color:#6b7280;display:block}.diff .same{display:block}
.chart{margin:.6em 0}form.inline{display:inline}
table.data td,table.data th{font:12px monospace}
"""


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
