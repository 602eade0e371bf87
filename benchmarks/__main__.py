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
import logging
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

ALL = [*(f"W{i}" for i in range(13)), "W9H", "W12T"]  # W9 with history; W12 at 1M timers
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

    def __init__(self, cfg: Config, profile: Path | None, no_predecessor: bool, tmp: Path) -> None:
        self.cfg = cfg
        self.profile = profile
        self.no_predecessor = no_predecessor
        self.tmp = tmp
        self.results: report.Results = {report.MOTION: {}, report.BASE: {}, report.PREDECESSOR: {}}
        self.checks: list[tuple[str, str, bool, str]] = []  # (system, what, ok, detail)
        self.workers: list[Worker] = []

    def predecessor(self, workload: str) -> None:
        """Run ``workload`` on Motion 0.1.132 (right after motion's, so both see the same load)."""
        if self.no_predecessor or workload in ("W0", "W9", "W10-", "W11", "W12"):
            return
        from benchmarks import predecessor

        print(f"  {workload} on Motion 0.1.132 ...", end="", flush=True)
        start = time.perf_counter()
        metrics, checks = predecessor.run(self.cfg, [workload], self.tmp)
        self.results[report.PREDECESSOR].update(metrics)
        self.checks += [(report.PREDECESSOR, w, ok, d) for w, ok, d in checks]
        bad = sum(1 for _, ok, _ in checks if not ok)
        print(f" {time.perf_counter() - start:.1f} s{f', {bad} check(s) failed' if bad else ''}")

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
        for key, value in metrics.items():  # W0.* are the raw baselines, whoever measured them
            self.results[report.BASE if key.startswith("W0.") else system][key] = value
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
            # the opt-in tracking listener of W1 would log the server going away
            logging.getLogger("motion.tracking").setLevel(logging.ERROR)
            server.stop()
    info = machine.describe(version)
    info["load average"] = (
        f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after (1 min)"
    )
    command = " ".join(["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])])
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
    from benchmarks import concurrency, debounce, history_cost, scale, stream, timers, workloads

    cfg = Config.make(server.url, args.quick)
    runner = Runner(cfg, args.profile, args.no_motion_python, tmp)
    want = set(args.only)
    mode = "quick" if args.quick else "full"
    print(f"redis-server {server.version()} on port {server.port}; {mode} run")
    # W1 measures the raw GETs in turns with its serve calls, W4 the raw Celery tasks
    # in turns with its repeats; W0 alone runs them by themselves.
    if "W0" in want and "W1" not in want:
        runner.run("W0 raw GET", report.BASE, workloads.w0_get)
    if "W1" in want:
        runner.run("W1 serve (and W0 raw GET)", report.MOTION, workloads.w1_serve)
        runner.predecessor("W1")
    queue_work = [
        ("W2", "W2 run with enqueue", workloads.w2_run_enqueue),
        ("W3", "W3 one hot instance", workloads.w3_hot),
        ("W4", "W4 many instances (and W0 raw Celery)", workloads.w4_many),
        ("W6", "W6 freshness", stream.w6_freshness),
        ("W7", "W7 two producers", stream.w7_producers),
        ("W8", "W8 burst", stream.w8_burst),
        ("W12", "W12 debounce", debounce.w12_debounce),
        ("W11", "W11 Redis cost per update (and raw Celery's)", concurrency.w11_cost),
    ]
    if "W0" in want and "W4" not in want:
        queue_work.insert(0, ("W0", "W0 raw Celery", workloads.w0_celery))
    _with_worker(runner, tmp, "prefork", 2, [w for w in queue_work if w[0] in want])
    if "W5" in want:
        _with_worker(runner, tmp, "threads", 64, [("W5", "W5 LLM-like", workloads.w5_llm)])
    if "W10" in want:
        wide = cfg.n_wide_llm
        variants = [
            ("threads", 64, "W10 async op, 64 threads", concurrency.w10_async),
            ("gevent", wide, "W10 sync op, gevent", concurrency.w10_gevent),
        ]
        if not cfg.quick:  # the smoke run keeps to one threads and one gevent worker
            variants += [
                ("threads", wide, f"W10 async op, {wide} threads", concurrency.w10_async_threads),
                # async ops on gevent: the drains await on the worker's one event loop
                ("gevent", wide, "W10 async op, gevent", concurrency.w10_async_gevent),
            ]
        for pool, concurrency_, name, func in variants:
            _with_worker(runner, tmp, pool, concurrency_, [("W10-", name, func)])
        runner.predecessor("W10")
    if "W9" in want:
        runner.run("W9 scale", report.MOTION, scale.w9_scale)
    if "W9H" in want:
        runner.run("W9H history on and off", report.MOTION, history_cost.w9_history)
    if "W12T" in want:  # no worker runs: its firer would claim the timers measured
        runner.run("W12T firer pass at 100k and 1M timers", report.MOTION, timers.w12_timers)
    return runner.results, runner.checks


def _with_worker(
    runner: Runner,
    tmp: Path,
    pool: str,
    concurrency: int,
    work: list[tuple[str, str, Workload]],
) -> None:
    if not work:
        return
    print(f"worker: celery -A workers worker -I bench_components -P {pool} -c {concurrency}")
    worker = Worker(runner.cfg.url, tmp / "logs", pool, concurrency).start()
    runner.workers = [worker]
    try:
        for workload, name, func in work:
            runner.run(name, report.BASE if workload == "W0" else report.MOTION, func)
            runner.predecessor(workload)
    finally:
        runner.workers = []
        worker.stop()


if __name__ == "__main__":
    sys.exit(main())
