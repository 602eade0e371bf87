"""The side-by-side report of ``motion replay``: ``report.json`` and ``report.html``.

Per instance: the state keys whose values differ between production and the shadow
state rebuilt through the candidate, the updates re-applied (and any that failed),
and each probe's serve output on both. Every value in the HTML is escaped (a state
value holding ``<script>`` is shown as text). Tool; uses tools (replay).
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from motion.tools.replay import Replay


def plain(value: Any) -> Any:
    """``value`` as JSON-able data (what JSON cannot hold becomes its ``repr``)."""
    return json.loads(json.dumps(value, default=repr))


def state_diff(production: dict[str, Any], shadow: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys whose values differ: ``{"key", "production", "candidate"}`` (a key absent
    on one side is ``null`` there, with ``"only"`` naming the side that has it)."""
    out = []
    for key in sorted(set(production) | set(shadow)):
        left, right = production.get(key), shadow.get(key)
        if key in production and key in shadow and plain(left) == plain(right):
            continue
        row = {"key": key, "production": plain(left), "candidate": plain(right)}
        if key not in shadow or key not in production:
            row["only"] = "production" if key in production else "candidate"
        out.append(row)
    return out


def as_json(result: Replay) -> dict[str, Any]:
    """The report as JSON-able data."""
    instances = []
    for item in result.instances:
        instances.append(
            {
                "instance": item.instance_id,
                "error": item.error,
                "first_seq": item.first_seq,
                "replayed": item.seqs,
                "failures": plain(item.failures),
                "diff": state_diff(item.production, item.shadow),
                "production_state": plain(item.production),
                "candidate_state": plain(item.shadow),
                "probes": plain(item.probes),
            }
        )
    return {
        "component": result.component,
        "candidate": result.candidate,
        "baseline": result.baseline,
        "instances": instances,
    }


def _cell(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, indent=1, default=repr)
    return f"<td><pre>{html.escape(text)}</pre></td>"


def as_html(report: dict[str, Any]) -> str:
    """The report (as :func:`as_json` made it) as one self-contained HTML page."""
    e = html.escape
    parts = [
        "<!doctype html><meta charset='utf-8'><title>motion replay</title>",
        "<style>body{font-family:sans-serif}td,th{border:1px solid #ccc;vertical-align:top;"
        "padding:4px}table{border-collapse:collapse}pre{margin:0;white-space:pre-wrap}</style>",
        f"<h1>Replay of {e(report['component'])}</h1>",
        f"<p>production: {e(report['baseline'])} &middot; candidate: {e(report['candidate'])}</p>",
    ]
    for item in report["instances"]:
        parts.append(f"<h2>{e(item['instance'])}</h2>")
        if item["error"]:
            parts.append(f"<p class='error'>{e(item['error'])}</p>")
            continue
        replayed = item["replayed"]
        span = f"{replayed[0]}-{replayed[-1]}" if replayed else "none"
        parts.append(f"<p>from the state before update #{item['first_seq']}, re-applied {span}</p>")
        for failure in item["failures"]:
            parts.append(f"<p class='error'>update failed: {e(json.dumps(failure))}</p>")
        parts.append("<h3>State differences</h3>")
        if not item["diff"]:
            parts.append("<p>none</p>")
        else:
            parts.append("<table><tr><th>key</th><th>production</th><th>candidate</th></tr>")
            for row in item["diff"]:
                parts.append(
                    f"<tr>{_cell(row['key'])}{_cell(row['production'])}{_cell(row['candidate'])}</tr>"
                )
            parts.append("</table>")
        parts.append("<h3>Probes</h3><table><tr><th>flow</th><th>props</th>")
        parts.append("<th>production</th><th>candidate</th></tr>")
        for probe in item["probes"]:
            cells = [probe["flow"], probe["props"], probe["production"], probe["candidate"]]
            parts.append("<tr>" + "".join(_cell(c) for c in cells) + "</tr>")
        parts.append("</table>")
        parts.append("<details><summary>Both states in full</summary><table>")
        parts.append("<tr><th>production</th><th>candidate</th></tr><tr>")
        parts.append(_cell(item["production_state"]) + _cell(item["candidate_state"]))
        parts.append("</tr></table></details>")
    return "\n".join(parts) + "\n"


def write(result: Replay, folder: str) -> tuple[str, str]:
    """Write ``report.json`` and ``report.html`` into ``folder`` (made if missing);
    returns their paths."""
    os.makedirs(folder, exist_ok=True)
    report = as_json(result)
    json_path = os.path.join(folder, "report.json")
    html_path = os.path.join(folder, "report.html")
    with open(json_path, "w", encoding="utf-8") as out:
        json.dump(report, out, indent=2)
    with open(html_path, "w", encoding="utf-8") as out:
        out.write(as_html(report))
    return json_path, html_path
