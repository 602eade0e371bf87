"""The results table: every metric of every system, the ratios, and the targets.

Results are a dict ``{system: {metric key: value}}`` for the systems ``motion``
(this project), ``motion-python`` (Motion 0.1.132) and ``baseline`` (raw redis-py
and raw Celery). Each :class:`Row` names one metric, the reference it is compared
with (a baseline, Motion, or an absolute number) and the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Results = dict[str, dict[str, float]]

MOTION, PREDECESSOR, BASE = "motion", "motion-python", "baseline"


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    wl: str
    what: str
    unit: str
    key: str
    ref: tuple[str, str, str] | None = None  # (label, system, key) the ratio divides by
    op: str = ""  # "<=" or ">=": the ratio's target; "abs<=" / "==": motion's value itself
    limit: float = math.nan


def _get(results: Results, system: str, key: str) -> float:
    return results.get(system, {}).get(key, math.nan)


def w10_rows() -> list[Row]:
    """W10's rows: each variant's size, wall against its ideal, ratio, memory, clients."""
    rows = []
    for prefix, label, limit in (
        ("async", "async op, -P threads -c 64", 1.25),
        ("async_threads", "async op, -P threads -c N (a thread each)", 1.25),
        ("gevent", "sync op, -P gevent -c N", 1.5),
        ("async_gevent", "async op, -P gevent -c N", 1.25),
    ):
        key = f"W10.{prefix}"
        ideal = ("ideal", MOTION, f"{key}.ideal")
        rows += [
            Row("W10", f"{label}: instances", "count", f"{key}.n"),
            Row("W10", "  first enqueue to last commit", "s", f"{key}.wall", ideal, "<=", limit),
            Row("W10", "  ideal (wait + enqueue time)", "s", f"{key}.ideal"),
            Row("W10", "  wall / ideal (Motion: at its size)", "ratio", f"{key}.ratio"),
            Row(
                "W10", "  worker RSS (max while running)", "MB", f"{key}.rss_mb", None, "abs<=", 300
            ),
            Row("W10", "  Redis connections (max while running)", "count", f"{key}.clients"),
        ]
    return rows


GET100 = ("raw GET 100 B p50", BASE, "W0.get100B.p50")
ROWS: list[Row] = [
    Row("W0", "raw redis-py GET 100 B, p50", "ms", "W0.get100B.p50"),
    Row("W0", "raw redis-py GET 100 B, p99", "ms", "W0.get100B.p99"),
    Row("W0", "raw redis-py GET 1 MB, p50", "ms", "W0.get1MB.p50"),
    Row("W0", "raw Celery no-op tasks (prefork -c 2)", "tasks/s", "W0.celery.tps"),
    Row("W0", "no-op EVALSHA round trips, one connection", "calls/s", "W0.evalsha.rate"),
    Row("W0", "raw Celery task latency at 200/s, p50", "ms", "W0.celery_lat.p50"),
    Row("W0", "raw Celery task latency at 200/s, p99", "ms", "W0.celery_lat.p99"),
    Row("W0", "raw Celery no-op task (W11's way): Redis CPU each", "us", "W0.cost.cpu_us"),
    Row("W0", "raw Celery no-op task: Redis commands each", "count", "W0.cost.cmds"),
    Row("W0", "  of them sent by clients (MONITOR)", "count", "W0.cost.round_trips"),
    Row("W1", "run serve-only, 100 B state, p50", "ms", "W1.100B.p50", GET100, "<=", 1.0),
    Row("W1", "run serve-only, 100 B state, p99", "ms", "W1.100B.p99"),
    Row("W1", "run serve-only, 1 MB state, p50", "ms", "W1.1MB.p50", GET100, "<=", 1.0),
    Row("W1", "run serve-only, 1 MB state, p99", "ms", "W1.1MB.p99"),
    Row(
        "W1", "  with MOTION_CLIENT_TRACKING=1, 100 B, p50", "ms", "W1t.100B.p50", GET100, "<=", 1.0
    ),
    Row("W1", "  with MOTION_CLIENT_TRACKING=1, 100 B, p99", "ms", "W1t.100B.p99"),
    Row("W1", "  with MOTION_CLIENT_TRACKING=1, 1 MB, p50", "ms", "W1t.1MB.p50", GET100, "<=", 1.0),
    Row("W1", "  with MOTION_CLIENT_TRACKING=1, 1 MB, p99", "ms", "W1t.1MB.p99"),
    Row(
        "W2",
        "run serve + enqueue, p50",
        "ms",
        "W2.p50",
        ("Motion", PREDECESSOR, "W2.p50"),
        "<=",
        0.7,
    ),
    Row(
        "W2",
        "run serve + enqueue, p99",
        "ms",
        "W2.p99",
        ("Motion", PREDECESSOR, "W2.p99"),
        "<=",
        1.0,
    ),
    Row(
        "W3",
        "one hot instance, 2,000 updates + flush",
        "upd/s",
        "W3.ups",
        ("Motion", PREDECESSOR, "W3.ups"),
        ">=",
        3.0,
    ),
    Row(
        "W3",
        "  same, against no-op EVALSHA round trips",
        "upd/s",
        "W3.ups",
        ("EVALSHA/s", BASE, "W0.evalsha.rate"),
        ">=",
        0.8,
    ),
    Row("W3", "  same, until the last commit (no flush polling)", "upd/s", "W3.ups_commit"),
    Row(
        "W4",
        "200 instances x 10, handle per update",
        "upd/s",
        "W4.ups",
        ("Motion", PREDECESSOR, "W4.ups"),
        ">=",
        10.0,
    ),
    Row(
        "W4",
        "  same, against raw Celery no-op tasks/s",
        "upd/s",
        "W4.ups",
        ("raw Celery", BASE, "W0.celery.tps"),
        ">=",
        0.8,
    ),
    Row("W4", "  same, until the last commit (no flush polling)", "upd/s", "W4.ups_commit"),
    Row(
        "W5",
        "50 instances x 4 updates of a 100 ms op",
        "s",
        "W5.wall",
        ("ideal 0.4 s", MOTION, "W5.ideal"),
        "<=",
        1.1,
    ),
    Row(
        "W5",
        "  same, until the last commit (no flush polling)",
        "s",
        "W5.wall_commit",
        ("ideal 0.4 s", MOTION, "W5.ideal"),
    ),
    Row(
        "W6",
        "freshness at 200 upd/s, lag p50",
        "ms",
        "W6.p50",
        ("Motion", PREDECESSOR, "W6.p50"),
        "<=",
        1.0,
    ),
    Row("W6", "freshness at 200 upd/s, lag p99", "ms", "W6.p99", None, "abs<=", 5.0),
    Row(
        "W6",
        "  same, against Motion's p99",
        "ms",
        "W6.p99",
        ("Motion", PREDECESSOR, "W6.p99"),
        "<=",
        1.0,
    ),
    Row(
        "W6",
        "  same, against raw Celery task latency p99",
        "ms",
        "W6.p99",
        ("raw Celery p99", BASE, "W0.celery_lat.p99"),
    ),
    *w10_rows(),
    Row(
        "W9H", "history off: Redis memory per instance (25 versions made)", "bytes", "W9h.off.bytes"
    ),
    Row("W9H", "history=20: Redis memory per instance", "bytes", "W9h.on.bytes"),
    Row("W9H", "history=20: memory the history adds per instance", "bytes", "W9h.extra.bytes"),
    Row("W9H", "history off: Redis CPU per update (enqueue + drain)", "us", "W9h.off.cpu_us"),
    Row("W9H", "history=20: Redis CPU per update", "us", "W9h.on.cpu_us"),
    Row("W9H", "history off: Redis commands per update", "count", "W9h.off.cmds"),
    Row("W9H", "history=20: Redis commands per update", "count", "W9h.on.cmds"),
    Row("W9H", "retain_updates=20 (history off): memory per instance", "bytes", "W9h.retain.bytes"),
    Row("W9H", "retain_updates=20: Redis CPU per update", "us", "W9h.retain.cpu_us"),
    Row("W9H", "retain_updates=20: Redis commands per update", "count", "W9h.retain.cmds"),
    Row("W9H", "history off: enqueue + drain, wall per update", "ms", "W9h.off.ms"),
    Row("W9H", "history=20: enqueue + drain, wall per update", "ms", "W9h.on.ms"),
    Row("W11", "Redis CPU per applied update", "us", "W11.cpu_us", None, "abs<=", 150),
    Row(
        "W11",
        "  against a raw Celery no-op task's",
        "us",
        "W11.cpu_us",
        ("raw Celery task", BASE, "W0.cost.cpu_us"),
    ),
    Row("W11", "  of it Redis' main thread", "us", "W11.cpu_main_us"),
    Row(
        "W11",
        "Redis commands per applied update",
        "count",
        "W11.cmds",
        ("raw Celery task", BASE, "W0.cost.cmds"),
    ),
    Row(
        "W11",
        "  of them sent by clients (MONITOR, a tenth the size)",
        "count",
        "W11.round_trips",
        ("raw Celery task", BASE, "W0.cost.round_trips"),
    ),
    Row("W11", "  of them run inside scripts", "count", "W11.in_scripts"),
    Row("W11", "  EVALSHA per applied update", "count", "W11.evalsha"),
    Row("W11", "  PUBLISH per applied update (task events)", "count", "W11.publish"),
    Row("W11", "  commandstats calls (counts commands inside scripts)", "count", "W11.cmdstats"),
    Row("W11", "applied updates/s during W11", "upd/s", "W11.rate"),
    Row(
        "W7",
        "two producers, per-producer order violations",
        "count",
        "W7.violations",
        None,
        "==",
        0.0,
    ),
    Row("W7", "two producers, updates lost", "count", "W7.lost", None, "==", 0.0),
    Row("W7", "two producers, throughput", "upd/s", "W7.ups", ("Motion", PREDECESSOR, "W7.ups")),
    Row("W8", "NUM_NEW_UPDATES: offered rate", "upd/s", "W8.keep.rate"),
    Row("W8", "NUM_NEW_UPDATES: max lag, 1st half of burst", "ms", "W8.keep.lag_first_half"),
    Row(
        "W8",
        "NUM_NEW_UPDATES: max lag, 2nd half of burst",
        "ms",
        "W8.keep.lag_second_half",
        ("1st half", MOTION, "W8.keep.lag_first_half"),
        "<=",
        1.5,
    ),
    Row("W8", "NUM_NEW_UPDATES: lag at the end of the burst", "ms", "W8.keep.lag_end"),
    Row("W8", "NUM_NEW_UPDATES: drain after the burst", "s", "W8.keep.drain"),
    Row("W8", "NUM_NEW_UPDATES: op calls per update", "ratio", "W8.keep.calls_per_update"),
    Row("W8", "batch=True: max lag, 1st half of burst", "ms", "W8.batch.lag_first_half"),
    Row(
        "W8",
        "batch=True: max lag, 2nd half of burst",
        "ms",
        "W8.batch.lag_second_half",
        ("1st half", MOTION, "W8.batch.lag_first_half"),
        "<=",
        1.5,
    ),
    Row("W8", "batch=True: lag at the end of the burst", "ms", "W8.batch.lag_end"),
    Row("W8", "batch=True: drain after the burst", "s", "W8.batch.drain"),
    Row(
        "W8",
        "batch=True: op calls per update",
        "ratio",
        "W8.batch.calls_per_update",
        None,
        "abs<=",
        0.2,
    ),
]


ROWS += [
    Row("W12", "debounce 0.5 s / max_wait 5 s, batch: op calls", "count", "W12.calls"),
    Row("W12", "  events lost", "count", "W12.lost", None, "==", 0.0),
    Row("W12", "  lag, last event to its commit", "s", "W12.lag", None, "abs<=", 1.0),
    Row("W12", "pending debounces (instances)", "count", "W12.pending.n"),
    Row("W12", "  time to enqueue and park them all", "s", "W12.pending.enqueue_s"),
    Row("W12", "  Redis memory per pending debounce", "bytes", "W12.pending.bytes"),
    Row("W12", "  a firer pass with none due", "ms", "W12.pending.idle_pass_ms"),
    Row("W12", "  all due at once: applied after the time, p50", "s", "W12.pending.late_p50"),
    Row("W12", "  all due at once: applied after the time, p99", "s", "W12.pending.late_p99"),
]


def scale_rows(results: Results) -> list[Row]:
    """W9's rows, one group per size measured (``W9.<size>.bytes`` etc.)."""
    labels = sorted(
        {k.split(".")[1] for k in results.get(MOTION, {}) if k.startswith("W9.")},
        key=lambda label: int(label.rstrip("k")),
    )
    rows = []
    for label in labels:
        size = f"{int(label.rstrip('k')) // 1000}M" if label == "1000k" else label
        first = ("smallest size's pass", MOTION, f"W9.{labels[0]}.sweep_ms")
        rows += [
            Row(
                "W9",
                f"{size} idle instances: Redis memory each",
                "bytes",
                f"W9.{label}.bytes",
                None,
                "abs<=",
                1024,
            ),
            Row(
                "W9",
                f"{size} idle: sweeper pass, 1,000 pending",
                "ms",
                f"W9.{label}.sweep_ms",
                *((first, "<=", 2.0) if label != labels[0] else ()),
            ),
            Row("W9", f"{size} idle: bulk creation rate", "inst/s", f"W9.{label}.create_per_s"),
        ]
    return rows


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def evaluate(row: Row, results: Results) -> tuple[float, str, str]:
    """``(ratio, target text, verdict)`` of ``row``; verdict is ``yes``, ``NO`` or ``""``."""
    value = _get(results, MOTION, row.key)
    ratio = math.nan
    if row.ref is not None:
        ref = _get(results, row.ref[1], row.ref[2])
        ratio = value / ref if ref and not math.isnan(ref) else math.nan
    if not row.op:
        return ratio, "", ""
    if row.op in ("<=", ">="):
        target = f"{row.op} {row.limit:g}x {row.ref[0] if row.ref else ''}"
        measured = ratio
    else:
        target = f"{'<=' if row.op == 'abs<=' else '='} {row.limit:g} {row.unit}"
        measured = value
    if math.isnan(measured):
        return ratio, target, "n/a"
    ok = {
        "<=": measured <= row.limit,
        ">=": measured >= row.limit,
        "abs<=": measured <= row.limit,
        "==": measured == row.limit,
    }[row.op]
    return ratio, target, "yes" if ok else "NO"


def table(results: Results) -> str:
    """The results as a Markdown table (also readable in a terminal)."""
    head = ["", "metric", "unit", "motion", "Motion 0.1.132", "reference", "ratio", "target", "met"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ROWS + scale_rows(results):
        if row.key not in results.get(MOTION, {}) and row.key not in results.get(BASE, {}):
            continue
        system = BASE if row.wl == "W0" else MOTION
        ratio, target, verdict = evaluate(row, results)
        ref = ""
        if row.ref is not None:
            ref = f"{row.ref[0]}: {_fmt(_get(results, row.ref[1], row.ref[2]))}"
        cells = [
            row.wl,
            row.what,
            row.unit,
            _fmt(_get(results, system, row.key)),
            "" if row.wl == "W0" else _fmt(_get(results, PREDECESSOR, row.key)),
            ref,
            "" if math.isnan(ratio) else f"{ratio:.2f}x",
            target,
            verdict,
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def missed(results: Results) -> list[str]:
    """The rows whose target was measured and not met."""
    rows = ROWS + scale_rows(results)
    return [f"{r.wl} {r.what.strip()}" for r in rows if evaluate(r, results)[2] == "NO"]
