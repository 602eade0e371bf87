"""The ``motion`` command: look at and manage instances, run workers.

::

    motion list Summary                     instance ids of a component
    motion inspect Summary__user-1          its stored state
    motion clear Summary__user-1            delete it (state, queue, cache)
    motion status [--json]                  backlog, lag, failures per component
    motion flush Summary__user-1            wait until its updates are applied
    motion worker -I my_components -c 8     celery -A workers worker ... (args pass through)

Redis comes from ``MOTION_REDIS_URL`` (or Motion's ``MOTION_REDIS_*`` variables),
or ``--redis-url``. Every command only calls :mod:`motion.admin`; exit status is 0
on success, 1 on an error (printed on stderr), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence

from motion import admin
from motion.errors import MotionError, UpdateFailedError
from motion.inbox import ALL_FLOWS


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    common.add_argument(
        "--redis-url",
        default=argparse.SUPPRESS,
        help="Redis URL (redis://, rediss://); default: MOTION_REDIS_URL or MOTION_REDIS_*",
    )
    parser = argparse.ArgumentParser(
        prog="motion",
        description="Inspect and manage motion component instances, and run workers.",
        allow_abbrev=False,
        parents=[common],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=f"example: {example}",
            allow_abbrev=False,
            parents=[common],
        )

    cmd = command("list", "List the instance ids of a component.", "motion list Summary")
    cmd.add_argument("component", help="component name")
    cmd = command(
        "inspect",
        "Print the stored state of an instance (load_state is not applied).",
        "motion inspect Summary__user-1",
    )
    cmd.add_argument("instance", help="instance name, Component__instance_id")
    cmd = command(
        "clear",
        "Delete an instance: its state, pending updates, failures and cached results.",
        "motion clear Summary__user-1",
    )
    cmd.add_argument("instance", help="instance name, Component__instance_id")
    cmd = command(
        "status",
        "Per component: backlog (pending instances and updates), lag (age of the oldest "
        "pending update), applied, failed and discarded updates, lease takeovers.",
        "motion status --json",
    )
    cmd.add_argument("components", nargs="*", help="only these components (default: all)")
    cmd.add_argument("--json", action="store_true", help="print JSON instead of a table")
    cmd = command(
        "flush",
        "Wait until the updates enqueued so far for an instance are applied; exit 1 if any "
        "of them failed or the timeout passed. Needs no component code.",
        "motion flush Summary__user-1 --timeout 30",
    )
    cmd.add_argument("instance", help="instance name, Component__instance_id")
    cmd.add_argument("--flow", default=ALL_FLOWS, help="wait only for this flow's updates")
    cmd.add_argument("--timeout", type=float, default=None, help="give up after S seconds")
    cmd = command(
        "copy",
        "Copy every motion key from one Redis to another (DUMP/RESTORE, keeps TTLs).",
        "motion copy redis://old:6379/0 redis://new:6379/0",
    )
    cmd.add_argument("src", help="source Redis URL")
    cmd.add_argument("dest", help="destination Redis URL")
    command(
        "worker",
        "Run a Celery worker for motion: `celery -A workers worker` with every other "
        "argument passed through (see `celery worker --help`). Use -I to import the "
        "modules that define your components.",
        "motion worker -I my_components -c 8 -P threads",
    )
    command(
        "metrics",
        "Serve backlog, lag and per-flow counters for Prometheus (/metrics) and autoscalers "
        "(/backlog); the options of `python -m motion.metrics` pass through.",
        "motion metrics --port 9808",
    )
    return parser


def _print_status(rows: list[admin.ComponentStatus]) -> None:
    if not rows:
        print("no components yet (none has had an instance)")
        return
    header = ("component", "pending inst", "pending upd", "lag s", "applied", "failed", "discarded")
    lines = [header] + [
        (
            r.component,
            str(r.pending_instances),
            str(r.pending_updates),
            f"{r.lag_seconds:.1f}",
            str(r.applied),
            str(r.failed),
            str(r.discarded),
        )
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())
    for r in rows:
        for flow, counts in sorted(r.flows.items()):
            detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            print(f"  {r.component}.{flow}: {detail}")
        if r.takeovers:
            print(f"  {r.component}: {r.takeovers} lease takeover(s) (a worker died or stalled)")
        if r.untaken:
            print(
                f"  {r.component}: {r.untaken} pending instance(s) whose wake-ups no worker "
                f"took: start a worker with its code (celery -A workers worker -I <module>)"
            )
        for name, why in sorted(r.held.items()):
            print(f"  held {name}: {why} (its updates are pending, not failed)")


def _run(args: argparse.Namespace) -> int:
    if args.command == "list":
        ids = admin.get_instances(args.component)
        for instance_id in ids:
            print(instance_id)
        print(f"{len(ids)} instance(s) of {args.component}", file=sys.stderr)
    elif args.command == "inspect":
        state = admin.inspect_state(args.instance)
        print(json.dumps(state, indent=2, sort_keys=True, default=repr))
    elif args.command == "clear":
        if not admin.clear_instance(args.instance):
            print(f"{args.instance} not found", file=sys.stderr)
            return 1
        print(f"cleared {args.instance}")
    elif args.command == "status":
        rows = admin.status(args.components)
        if args.json:
            print(json.dumps([r.as_dict() for r in rows], indent=2))
        else:
            _print_status(rows)
    elif args.command == "flush":
        last = admin.flush_instance(args.instance, args.flow, args.timeout)
        print(f"{args.instance}: applied through update #{last}")
    elif args.command == "copy":
        copied = asyncio.run(admin.copy_db(args.src, args.dest))
        print(f"copied {copied} key(s)")
    return 0


def _worker(extra: list[str]) -> int:
    """Replace this process with ``celery -A workers worker <extra>``."""
    argv = [sys.executable, "-m", "celery", "-A", "workers", "worker", *extra]
    sys.stdout.flush()
    os.execv(sys.executable, argv)
    return 1  # pragma: no cover  (execv does not return)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``motion`` command; returns the exit status."""
    parser = _parser()
    args, extra = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    url = getattr(args, "redis_url", None)
    if url:
        os.environ["MOTION_REDIS_URL"] = url
    if args.command == "worker":
        return _worker(extra)
    if args.command == "metrics":
        from motion.metrics import main as serve_metrics

        return serve_metrics(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from motion import connection, settings

    settings.reset()  # pick up --redis-url
    connection.reset()
    try:
        return _run(args)
    except UpdateFailedError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (MotionError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
