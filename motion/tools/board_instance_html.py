"""The dashboard's instance page: counters, state by type with editors, pending updates,
dead letters (retry, drop), pause and resume, history with a diff of two versions,
per-flow counters and the component's charts.

Built from the plain values of an :class:`InstanceView`, with every value escaped
(:func:`motion.tools.board_state.esc`) and no script; the write buttons are forms that
carry the session's CSRF token. Owns no I/O.

Tool; uses tools (board_actions, board_charts, board_html, board_state, browse, series).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from motion.floor.wakeup import flow_label
from motion.tools.board_actions import Version
from motion.tools.board_charts import component_charts
from motion.tools.board_html import WATCH_SECONDS, link, notice
from motion.tools.board_state import editable, editor, esc, render_value
from motion.tools.browse import Pending, Summary
from motion.tools.series import Minute


@dataclass
class InstanceView:
    """Everything the instance page shows (read by :mod:`motion.tools.board_routes`)."""

    component: str
    instance_id: str
    info: Summary
    state: Mapping[str, Any]
    flows: Mapping[str, Mapping[str, int]]
    pending: Sequence[Pending] = ()
    dead: Sequence[Mapping[str, Any]] = ()
    history: Sequence[Version] = ()
    history_note: str = ""  # why no history is shown (no code, none kept)
    minutes: Sequence[Minute] = ()
    now_ms: int = field(default_factory=lambda: int(time.time() * 1000))


def _button(action: str, label: str, csrf: str, view: InstanceView, **fields: Any) -> str:
    hidden = {"csrf": csrf, "component": view.component, "id": view.instance_id, **fields}
    inputs = "".join(
        f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">' for k, v in hidden.items()
    )
    return (
        f'<form class="inline" method="post" action="{esc(action)}">{inputs}'
        f"<button>{esc(label)}</button></form>"
    )


def _state_table(view: InstanceView, csrf: str, editing: bool) -> str:
    rows = []
    for key, value in sorted(view.state.items()):
        edit = ""
        if editing and editable(value):
            edit = editor(view.component, view.instance_id, key, value, csrf)
        rows.append(
            f'<tr data-key="{esc(key)}"><td>{esc(key)}</td>'
            f"<td>{esc(type(value).__name__)}</td>"
            f"<td>{render_value(value)}{edit}</td></tr>"
        )
    return (
        "<h2>State</h2><table><tr><th>key</th><th>type</th><th>value</th></tr>"
        + "".join(rows)
        + "</table>"
    )


def _pending(view: InstanceView) -> str:
    if not view.pending:
        return '<h2>Pending updates</h2><p class="muted" id="pending-list">None.</p>'
    rows = "".join(
        f'<tr data-seq="{p.seq}"><td>#{p.seq}</td><td>{esc(flow_label(p.flow))}</td>'
        f"<td>{_age(view.now_ms, p.enqueued_ms)}</td><td>{'held' if p.parked else ''}</td></tr>"
        for p in view.pending
    )
    more = view.info.pending - len(view.pending)
    tail = f'<p class="muted">and {more} more</p>' if more > 0 else ""
    return (
        '<h2>Pending updates</h2><table id="pending-list"><tr><th>update</th><th>flow</th>'
        f"<th>waiting</th><th></th></tr>{rows}</table>{tail}"
    )


def _age(now_ms: int, then_ms: int | None) -> str:
    if then_ms is None:
        return "?"
    seconds = max(now_ms - then_ms, 0) / 1000
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def _dead(view: InstanceView, csrf: str, acting: bool) -> str:
    if not view.dead:
        return '<h2>Dead letters</h2><p class="muted" id="dead-list">None.</p>'
    rows = []
    for record in view.dead:
        seq = record.get("seq", "?")
        actions = ""
        if acting:
            actions = _button("/instance/retry", "Retry", csrf, view, seq=seq) + _button(
                "/instance/drop", "Drop", csrf, view, seq=seq
            )
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(float(record.get("at") or 0)))
        rows.append(
            f'<tr data-seq="{esc(seq)}"><td>#{esc(seq)}</td>'
            f"<td>{esc(flow_label(str(record.get('flow', ''))))}</td>"
            f"<td>{esc(record.get('op', ''))}</td>"
            f"<td><pre>{esc(record.get('error_type', ''))}: {esc(record.get('message', ''))}"
            f"</pre></td><td>{esc(when)} UTC</td><td>{actions}</td></tr>"
        )
    return (
        '<h2>Dead letters</h2><table id="dead-list"><tr><th>update</th><th>flow</th>'
        "<th>op</th><th>error</th><th>failed at</th><th></th></tr>" + "".join(rows) + "</table>"
    )


def _controls(view: InstanceView, csrf: str) -> str:
    flows = [f for f in view.flows if not f.startswith("::")]
    parts = [
        _button("/instance/pause", "Pause every flow", csrf, view)
        + _button("/instance/resume", "Resume every flow", csrf, view)
    ]
    for flow in flows:
        parts.append(
            f"<li>{esc(flow)}: "
            + _button("/instance/pause", "Pause", csrf, view, flow=flow)
            + _button("/instance/resume", "Resume", csrf, view, flow=flow)
            + "</li>"
        )
    held = "".join(
        f'<li data-hold="{esc(flow)}">{"every flow" if flow == "*" else esc(flow)}: '
        f"held ({esc(reason)})</li>"
        for flow, reason in sorted(view.info.holds.items())
    )
    state = f'<ul id="holds">{held}</ul>' if held else '<p class="muted" id="holds">No hold.</p>'
    flow_list = "".join(parts[1:])
    return (
        f'<h2>Pause and resume</h2><div id="controls">{state}{parts[0]}<ul>{flow_list}</ul></div>'
    )


def _select(name: str, versions: Sequence[int], chosen: int) -> str:
    options = "".join(
        f'<option value="{n}"{" selected" if n == chosen else ""}>{n}</option>' for n in versions
    )
    return f'<select name="{name}">{options}</select>'


def _history(view: InstanceView) -> str:
    if not view.history:
        note = view.history_note or "No version kept yet."
        return f'<h2>History</h2><p class="muted" id="history">{esc(note)}</p>'
    rows = "".join(
        f'<tr data-version="{v.version}"><td>{v.version}</td>'
        f"<td>{esc(', '.join(f'#{s}' for s in v.seqs))}</td>"
        f"<td>{esc(', '.join(flow_label(f) for f in v.flows))}</td>"
        f"<td>{esc(', '.join(v.changed))}</td>"
        f"<td>{esc(v.at.strftime('%Y-%m-%d %H:%M:%S') if v.at else '')}</td></tr>"
        for v in view.history
    )
    versions = [v.version for v in view.history]
    newest, older = versions[0], versions[min(1, len(versions) - 1)]
    pick = (
        f'<form method="get" action="/instance/diff" id="compare">'
        f'<input type="hidden" name="component" value="{esc(view.component)}">'
        f'<input type="hidden" name="id" value="{esc(view.instance_id)}">'
        f"Compare version {_select('a', versions, older)} with "
        f"{_select('b', versions, newest)} <button>Diff</button></form>"
    )
    return (
        '<h2>History</h2><table id="history"><tr><th>version</th><th>updates</th>'
        f"<th>flows</th><th>changed keys</th><th>at (UTC)</th></tr>{rows}</table>{pick}"
    )


def _counts(view: InstanceView) -> str:
    items = "".join(
        f"<li>{esc(flow_label(flow))}: "
        + ", ".join(f"{esc(k)} {int(n)}" for k, n in sorted(c.items()))
        + "</li>"
        for flow, c in view.flows.items()
    )
    return (
        f"<h2>Updates of {esc(view.component)} per flow</h2>"
        f'<ul id="flow-counts">{items or "<li class=muted>none yet</li>"}</ul>'
    )


def instance_page(
    view: InstanceView,
    *,
    csrf: str,
    read_only: bool,
    message: str = "",
    error: bool = False,
    watching: bool = False,
) -> str:
    """The instance page; ``watching``: it reloads itself (see :data:`WATCH_SECONDS`), with
    a link to stop, and shows no editor (a reload would lose what is typed)."""
    info = view.info
    facts = (
        f'<p id="facts">version <b id="version">{info.version}</b> · updates enqueued '
        f'<span id="seq">{info.seq}</span>, applied <span id="applied">{info.applied}</span>, '
        f'pending <span id="pending">{info.pending}</span> · failure records '
        f'<span id="failures">{info.failures}</span></p>'
    )
    here = link("/instance", component=view.component, id=view.instance_id)
    if watching:
        watch = (
            f'<p class="muted">Reloading every {WATCH_SECONDS} s to show new versions. '
            f'<a id="watch" href="{here}">Stop watching</a> (to edit a value)</p>'
        )
    else:
        href = link("/instance", component=view.component, id=view.instance_id, watch=1)
        watch = f'<p><a id="watch" href="{href}">Watch</a> (reload as versions commit)</p>'
    acting = not read_only and not watching
    mode = '<p class="muted">Read-only dashboard: editing is off.</p>' if read_only else ""
    back = f'<a href="{link("/component", name=view.component)}">{esc(view.component)}</a>'
    return (
        f"<p>{back}</p><h1>{esc(view.instance_id)}</h1>{notice(message, error)}{facts}"
        f"{watch}{mode}{_state_table(view, csrf, acting)}{_pending(view)}"
        f"{_dead(view, csrf, acting)}{_controls(view, csrf) if acting else ''}"
        f"{_history(view)}{_counts(view)}{component_charts(view.component, view.minutes)}"
    )


def diff_page(component: str, instance_id: str, a: int, b: int, body: str) -> str:
    """The diff of versions ``a`` and ``b`` (``body``: from :func:`board_state.diff_html`)."""
    back = link("/instance", component=component, id=instance_id)
    return (
        f'<p><a href="{back}">{esc(component)} / {esc(instance_id)}</a></p>'
        f"<h1>Version {a} → version {b}</h1>{body}"
    )
