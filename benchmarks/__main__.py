"""``python -m benchmarks [--quick] [--only W1,W3] [--no-motion-python]``: run the suite.

Starts a redis-server on a free loopback port, runs every workload against this
project's motion (worker subprocesses as a user starts them), the raw baselines
and Motion 0.1.132 (in its own virtualenv, through ``motion_python_driver.py``),
prints the table of medians and ratios, and on a full run writes
``benchmarks/RESULTS.md``. Exits 1 if a correctness check of motion failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from benchmarks import machine, report
from benchmarks.harness import HERE, RedisServer, Worker, motion_env
from benchmarks.workloads import Checks, Config, Metrics

ALL = [f"W{i}" for i in range(10)]
Workload = Callable[[Config], tuple[Metrics, Checks]]


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short smoke run (about a minute)")
    parser.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    parser.add_argument(
        "--no-motion-python", action="store_true", help="skip Motion 0.1.132 (and its venv)"
    )
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--results",
        type=Path,
        default=None,
        help="Markdown report path (default: benchmarks/RESULTS.md on a full run of every "
        "workload, none otherwise)",
    )
    parser.add_argument(
        "--profile", type=Path, help="write cProfile (caller) and py-spy (worker) profiles here"
    )
    args = parser.parse_args(argv)
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()] or ALL
    unknown = set(args.only) - set(ALL)
    if unknown:
        parser.error(f"unknown workloads {sorted(unknown)}; choose from {ALL}")
    return args


class Runner:
    """Runs workloads, collecting metrics and checks, never letting one failure stop the rest."""

    def __init__(self, cfg: Config, profile: Path | None) -> None:
        self.cfg = cfg
        self.profile = profile
        self.results: report.Results = {report.MOTION: {}, report.BASE: {}}
        self.checks: list[tuple[str, str, bool, str]] = []  # (system, what, ok, detail)
        self.workers: list[Worker] = []

    def run(self, name: str, system: str, func: Workload) -> None:
        print(f"  {name} ...", end="", flush=True)
        start = time.perf_counter()
        try:
            if self.profile is not None:
                from benchmarks import profiling

                metrics, checks = profiling.profiled(
                    name, func, self.cfg, self.profile, self.workers
                )
            else:
                metrics, checks = func(self.cfg)
        except Exception as exc:
            traceback.print_exc()
            metrics, checks = {}, [(f"{name} ran", False, f"{type(exc).__name__}: {exc}")]
        self.results[system].update(metrics)
        self.checks += [(system, what, ok, detail) for what, ok, detail in checks]
        bad = sum(1 for _, ok, _ in checks if not ok)
        print(
            f" {time.perf_counter() - start:.1f} s{'' if not bad else f', {bad} check(s) FAILED'}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    started, load_before = time.time(), os.getloadavg()[0]
    sys.path.insert(0, str(HERE))  # bench_components, as the workers import it
    with tempfile.TemporaryDirectory(prefix="motion-bench-") as tmp:
        server = RedisServer(Path(tmp) / "redis").start()
        try:
            version = server.version()
            results, checks = _run_all(args, server, Path(tmp))
        finally:
            server.stop()
    info = machine.describe(version)
    info["load average"] = (
        f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after (1 min)"
    )
    command = "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:])
    text = report.table(results)
    print()
    print(text)
    print()
    failed = [(s, w, d) for s, w, ok, d in checks if not ok]
    for system, what, detail in failed:
        print(f"CHECK FAILED [{system}] {what}: {detail}")
    missed = report.missed(results)
    print(f"targets missed: {', '.join(missed) if missed else 'none'}")
    print(f"total {time.time() - started:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps({"results": results, "checks": checks, "machine": info}, indent=1)
        )
    target = args.results
    if target is None and not args.quick and args.only == ALL and not args.no_motion_python:
        target = HERE / "RESULTS.md"
    if target is not None:
        machine.write_results(target, text, checks, missed, info, command, time.time() - started)
        print(f"wrote {target}")
    return 1 if any(s == report.MOTION and not ok for s, _, ok, _ in checks) else 0


def _run_all(
    args: argparse.Namespace, server: RedisServer, tmp: Path
) -> tuple[report.Results, list[tuple[str, str, bool, str]]]:
    env = motion_env(server.url)
    os.environ.update({k: v for k, v in env.items() if k.startswith("MOTION_")})
    from benchmarks import scale, stream, workloads

    cfg = Config.make(server.url, args.quick)
    runner = Runner(cfg, args.profile)
    want = set(args.only)
    mode = "quick" if args.quick else "full"
    print(f"redis-server {server.version()} on port {server.port}; {mode} run")
    if "W0" in want:
        runner.run("W0 raw GET", report.BASE, workloads.w0_get)
    if "W1" in want:
        runner.run("W1 serve", report.MOTION, workloads.w1_serve)
    queue_work = [
        ("W0", "W0 raw Celery", report.BASE, workloads.w0_celery),
        ("W2", "W2 run with enqueue", report.MOTION, workloads.w2_run_enqueue),
        ("W3", "W3 one hot instance", report.MOTION, workloads.w3_hot),
        ("W4", "W4 many instances", report.MOTION, workloads.w4_many),
        ("W6", "W6 freshness", report.MOTION, stream.w6_freshness),
        ("W7", "W7 two producers", report.MOTION, stream.w7_producers),
        ("W8", "W8 burst", report.MOTION, stream.w8_burst),
    ]
    _with_worker(runner, tmp, "prefork", 2, [w for w in queue_work if w[0] in want])
    if "W5" in want:
        llm = [("W5", "W5 LLM-like", report.MOTION, workloads.w5_llm)]
        _with_worker(runner, tmp, "threads", 64, llm)
    if not args.no_motion_python and want - {"W0", "W9"}:
        from benchmarks import predecessor

        print("Motion 0.1.132:")
        metrics, checks = predecessor.run(server, cfg, sorted(want - {"W0", "W9"}), tmp)
        runner.results[report.PREDECESSOR] = metrics
        runner.checks += [(report.PREDECESSOR, w, ok, d) for w, ok, d in checks]
    if "W9" in want:
        runner.run("W9 scale", report.MOTION, scale.w9_scale)
    return runner.results, runner.checks


def _with_worker(
    runner: Runner,
    tmp: Path,
    pool: str,
    concurrency: int,
    work: list[tuple[str, str, str, Workload]],
) -> None:
    if not work:
        return
    print(f"worker: celery -A workers worker -I bench_components -P {pool} -c {concurrency}")
    worker = Worker(runner.cfg.url, tmp / "logs", pool, concurrency).start()
    runner.workers = [worker]
    try:
        for _, name, system, func in work:
            runner.run(name, system, func)
    finally:
        runner.workers = []
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())
