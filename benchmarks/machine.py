"""What machine a run was on, and the Markdown report of a run (``RESULTS.md``)."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from pathlib import Path

from benchmarks.harness import ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def describe(redis_version: str) -> dict[str, str]:
    """nproc, memory, CPU, Python, Redis and the motion commit of this run."""
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "nproc": str(os.cpu_count()),
        "memory": f"{_memory_gib():.1f} GiB",
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "redis": redis_version,
        "os": platform.platform(),
        "commit": _commit(),
    }


def write_results(
    path: Path,
    table: str,
    checks: list[tuple[str, str, bool, str]],
    missed: list[str],
    info: dict[str, str],
    command: str,
    seconds: float,
) -> None:
    """Write the report of a run to ``path``."""
    machine = "\n".join(f"- {k}: {v}" for k, v in info.items())
    failed = [f"- [{s}] {w}: {d}" for s, w, ok, d in checks if not ok]
    passed = sum(1 for *_, ok, _ in checks if ok)
    text = f"""# Benchmark results

Command: `{command}` (or `bash benchmarks/run.sh`), {seconds:.0f} s in all.
Every number is from that one run, on one redis-server, on this machine:

{machine}

Medians over repeats; latencies in ms per call; "ratio" is motion's value divided by
the reference in the same run. See `benchmarks/README.md` for what each workload does.

{table}

Targets missed: {", ".join(missed) if missed else "none"}.

Correctness checks: {passed} passed, {len(failed)} failed.
{chr(10).join(failed)}
"""
    # benchmarks/knn.py's section (between its markers) is its own run: keep it
    old = path.read_text() if path.exists() else ""
    begin, end = "<!-- knn:begin -->", "<!-- knn:end -->"
    if begin in old and end in old:
        text += "\n" + begin + old.split(begin, 1)[1].split(end, 1)[0] + end + "\n"
    path.write_text(text)
