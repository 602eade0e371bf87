"""Profiles for ``python -m benchmarks --profile DIR``: where the time goes, per workload.

The caller side (the benchmark process: handles, serve ops, enqueue) runs under
cProfile; each worker process is sampled by py-spy (``pip install py-spy``, or
set ``PY_SPY`` to its path), if it is installed. For each workload ``Wn`` the
folder gets:

- ``Wn.caller.prof`` (open with ``python -m pstats``) and ``Wn.caller.txt`` (top
  functions by own time);
- ``Wn.worker-<pid>.txt``: top functions by own and by inclusive samples;
- ``Wn.redis.txt``: the Redis commands the workload caused (``INFO
  commandstats``): calls and server time per command (commands scripts run included);
- ``Wn.scripts.txt``: server time per command clients sent and per motion script
  (``SLOWLOG`` with threshold 0 while the workload runs: its last 200,000 entries).

Profiling slows the caller: its numbers are not the run's.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import re
import shutil
import signal
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.harness import Worker

TOP = 30
_LINE = re.compile(r":\d+\)$")


def py_spy() -> str | None:
    """The py-spy binary: ``$PY_SPY`` or on PATH."""
    found = os.environ.get("PY_SPY") or shutil.which("py-spy")
    return found if found and Path(found).exists() else None


def _spy(binary: str, pid: int, out: Path) -> subprocess.Popen[bytes]:
    args = [binary, "record", "--pid", str(pid), "--format", "raw", "-o", str(out)]
    args += ["--rate", "250", "--nonblocking"]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarize_raw(raw: Path) -> str:
    """Top frames of py-spy's collapsed stacks, by own samples and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_LINE.sub(")", f) for f in stack.split(";")]
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    if not total:
        return "no samples (the process was idle)\n"
    out = [f"{total} samples\n", "own time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(TOP)]
    out += ["", "inclusive time:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in inclusive.most_common(TOP)]
    ours = [(f, n) for f, n in inclusive.most_common() if "(motion/" in f]
    out += ["", "inclusive time, motion's own functions:"]
    out += [f"  {100 * n / total:5.1f}%  {f}" for f, n in ours[:TOP]]
    return "\n".join(out) + "\n"


def command_stats(client: Any) -> dict[str, tuple[int, int]]:
    """``{command: (calls, usec)}`` from ``INFO commandstats``."""
    raw = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (v["calls"], v["usec"]) for k, v in raw.items()}


def command_delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> str:
    """The Redis commands a workload sent: calls and server time, most calls first."""
    rows = []
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls > c0:
            rows.append((calls - c0, usec - u0, name))
    rows.sort(reverse=True)
    total_calls = sum(r[0] for r in rows)
    total_usec = sum(r[1] for r in rows)
    out = [f"{total_calls} commands, {total_usec / 1000:.0f} ms of Redis time", ""]
    out += [f"  {calls:9d} calls  {usec / 1000:9.1f} ms  {name}" for calls, usec, name in rows]
    return "\n".join(out) + "\n"


SLOWLOG_MAX = 200_000


def script_costs_start(client: Any) -> Any:
    """Log every command with its duration (``SLOWLOG`` threshold 0) from now on;
    returns the settings to restore."""
    old = client.config_get("slowlog-*")
    client.config_set("slowlog-max-len", SLOWLOG_MAX)
    client.config_set("slowlog-log-slower-than", 0)
    client.slowlog_reset()
    return old


def script_costs(client: Any, old: Any) -> str:
    """Server time per command name and, for ``EVALSHA``, per motion script (``SLOWLOG``,
    the last :data:`SLOWLOG_MAX` commands a client sent; a script's inner commands are
    part of its entry)."""
    from motion.floor import scripts

    entries = client.slowlog_get(SLOWLOG_MAX)
    for key, value in old.items():
        client.config_set(key, value)
    names = {scripts.get(n).sha: n for n in scripts.NAMES}
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    for entry in entries:
        words = entry["command"].split()
        if not words:
            continue
        name = words[0].decode(errors="replace").upper()
        if name == "EVALSHA" and len(words) > 1:
            name = f"EVALSHA {names.get(words[1].decode(errors='replace'), words[1][:8])}"
        calls[name] += 1
        usec[name] += int(entry["duration"])
    total = sum(usec.values()) or 1
    out = [f"{sum(calls.values())} commands logged, {total / 1000:.0f} ms of server time", ""]
    for name, us in usec.most_common():
        share = 100 * us / total
        each = us / calls[name]
        out.append(
            f"  {calls[name]:8d} calls {us / 1000:9.1f} ms {share:5.1f}% {each:7.1f} us  {name}"
        )
    return "\n".join(out) + "\n"


def profiled(
    name: str,
    func: Callable[[Any], tuple[Any, Any]],
    cfg: Any,
    folder: Path,
    workers: list[Worker],
) -> tuple[Any, Any]:
    """Run ``func(cfg)`` under cProfile, with py-spy on every worker process."""
    folder.mkdir(parents=True, exist_ok=True)
    slug = name.split()[0]
    binary = py_spy()
    spies: list[tuple[subprocess.Popen[bytes], Path]] = []
    if binary:
        for worker in workers:
            for pid in worker.pids:
                out = folder / f"{slug}.worker-{pid}.raw"
                spies.append((_spy(binary, pid, out), out))
    import redis

    client = redis.Redis.from_url(cfg.url)
    before = command_stats(client)
    slowlog = script_costs_start(client)
    profile = cProfile.Profile()
    profile.enable()
    try:
        return func(cfg)
    finally:
        profile.disable()
        (folder / f"{slug}.redis.txt").write_text(command_delta(before, command_stats(client)))
        (folder / f"{slug}.scripts.txt").write_text(script_costs(client, slowlog))
        profile.dump_stats(str(folder / f"{slug}.caller.prof"))
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("tottime").print_stats(TOP)
        (folder / f"{slug}.caller.txt").write_text(text.getvalue())
        for proc, out in spies:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
            if out.exists():
                out.with_suffix(".txt").write_text(summarize_raw(out))
