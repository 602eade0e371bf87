"""The ``motion`` command: look at and manage instances, run workers.

::

    motion list Summary                     instance ids of a component
    motion inspect Summary__user-1          its stored state
    motion clear Summary__user-1            delete it (state, queue, cache)
    motion status [--json]                  backlog, lag, failures per component
    motion flush Summary__user-1            wait until its updates are applied
    motion history Summary__user-1          its kept versions (what made each)
    motion replay --candidate m:C ...       re-apply retained updates through new code
    motion failed Summary__user-1           its dead letters; retry/drop one (cli_updates)
    motion worker -I my_components -c 8     celery -A workers worker ... (args pass through)
    motion dashboard [--host H --port P]     the dashboard (loopback only without a key)
    motion init                             write a .motionrc.yml (Motion's config file)
    motion vis main.py:Summary              write the flow graph as JSON (motion-vis viewer)

Redis comes from ``MOTION_REDIS_URL`` (or Motion's ``MOTION_REDIS_*`` variables),
or ``--redis-url``. Every command only calls :mod:`motion.tools.admin`; exit status is 0
on success, 1 on an error (printed on stderr), 2 on a usage error.

Tool; uses tools (admin, board, cli_updates, metrics, past, replay), the definition layer
(component), the floor (connection, errors, inbox, settings).
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import sys
from collections.abc import Sequence

from motion.define.component import Component
from motion.floor.errors import CommandLineError, MotionError, UpdateFailedError
from motion.floor.inbox import ALL_FLOWS
from motion.floor.wakeup import shown_flow
from motion.tools import admin, cli_updates
from motion.tools.past import print_history


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
    cli_updates.add_commands(command)
    cmd = command(
        "history",
        "Print the kept versions of an instance, newest first: version, time, flows, "
        "seqs and changed keys (Component(history=K) keeps K).",
        "motion history Summary__user-1 --limit 5 --json",
    )
    cmd.add_argument("instance", help="instance name, Component__instance_id")
    cmd.add_argument("--limit", type=int, default=None, help="at most N versions")
    cmd.add_argument("--json", action="store_true", help="print JSON (one list) instead")
    cmd.add_argument("--values", action="store_true", help="with --json: the changed values too")
    cmd = command(
        "replay",
        "Rebuild instances' states from their retained updates (retain_updates=N) "
        "through a candidate's update ops, in memory (nothing is written), serve each "
        "probe on production and on the rebuilt state, and write report.json and "
        "report.html side by side.",
        "motion replay --candidate new_prompts:Summary --instances u1 u2 --probes p.jsonl",
    )
    cmd.add_argument("--candidate", required=True, help="module:Component, the new code")
    cmd.add_argument(
        "--baseline",
        default=None,
        help="module:Component the workers run (default: the other loaded definition "
        "with the candidate's name)",
    )
    cmd.add_argument("--instances", nargs="+", required=True, help="instance ids")
    cmd.add_argument("--probes", required=True, help='JSON lines: {"flow": ..., "props": {...}}')
    cmd.add_argument("--out", default="replay-report", help="folder of the report")
    cmd = command(
        "copy",
        "Copy every motion key from one Redis to another (DUMP/RESTORE, keeps TTLs).",
        "motion copy redis://old:6379/0 redis://new:6379/0",
    )
    cmd.add_argument("src", help="source Redis URL")
    cmd.add_argument("dest", help="destination Redis URL")
    command(
        "init",
        "Write a .motionrc.yml in this directory from the MOTION_REDIS_* variables "
        "(Motion's defaults: localhost:6379, db 0); an existing file is left alone.",
        "motion init",
    )
    cmd = command(
        "vis",
        "Write a component's flow graph (Motion's get_graph JSON, for the motion-vis viewer).",
        "motion vis main.py:Summary --output graph.json",
    )
    cmd.add_argument("target", help="FILE.py:Variable (or module:Variable) naming a Component")
    cmd.add_argument("--output", default="graph.json", help="JSON file to write (graph.json)")
    command(
        "worker",
        "Run a Celery worker for motion: `celery -A workers worker` with every other "
        "argument passed through (see `celery worker --help`). Use -I to import the "
        "modules that define your components.",
        "motion worker -I my_components -c 8 -P threads",
    )
    cmd = command(
        "dashboard",
        "Serve the dashboard (components, instances, state, an editor). Without "
        "MOTION_DASHBOARD_KEY it answers on loopback only and refuses another --host.",
        "motion dashboard --port 8080 -I my_components",
    )
    cmd.add_argument("--host", default="127.0.0.1", help="address to listen on (127.0.0.1)")
    cmd.add_argument("--port", type=int, default=8080, help="port to listen on (8080)")
    cmd.add_argument("--read-only", action="store_true", help="show state, allow no edits")
    cmd.add_argument(
        "-I",
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="a module defining components (its serializer is then used to edit)",
    )
    command(
        "metrics",
        "Serve backlog, lag and per-flow counters for Prometheus (/metrics) and autoscalers "
        "(/backlog); the options of `python -m motion.tools.metrics` pass through.",
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
            print(f"  {r.component}.{shown_flow(flow)}: {detail}")
        if r.takeovers:
            print(f"  {r.component}: {r.takeovers} lease takeover(s) (a worker died or stalled)")
        if r.untaken:
            print(
                f"  {r.component}: {r.untaken} pending instance(s) whose wake-ups no worker "
                f"took: start a worker with its code (celery -A workers worker -I <module>)"
            )
        for name, why in sorted(r.held.items()):
            print(f"  held {name}: {why} (its updates are pending, not failed)")


def _init() -> int:
    """Motion's ``motion init``: a ``.motionrc.yml`` from the environment's values."""
    path = ".motionrc.yml"
    if os.path.exists(path):
        print(f"{path} already exists in {os.getcwd()}; left unchanged.")
        return 0
    env = os.environ
    config: dict[str, object] = {
        "MOTION_ENV": env.get("MOTION_ENV", "prod"),
        "MOTION_REDIS_DB": int(env.get("MOTION_REDIS_DB", "0")),
        "MOTION_REDIS_HOST": env.get("MOTION_REDIS_HOST", "localhost"),
        "MOTION_REDIS_PASSWORD": env.get("MOTION_REDIS_PASSWORD"),
        "MOTION_REDIS_PORT": int(env.get("MOTION_REDIS_PORT", "6379")),
        "MOTION_REDIS_SSL": env.get("MOTION_REDIS_SSL", False),
    }
    # JSON scalars are YAML scalars: no YAML library needed to write the file
    text = "".join(f"{key}: {json.dumps(value)}\n" for key, value in config.items())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # it may hold a password
    with os.fdopen(fd, "w") as out:
        out.write(text)
    print(f"created {path} in {os.getcwd()}")
    return 0


def _vis(target: str, output: str) -> int:
    """Motion's ``motion vis FILE.py:Var``: write ``Var.get_graph()`` as JSON."""
    where, sep, var = target.rpartition(":")
    if not sep or not where or not var:
        raise CommandLineError(f"{target!r}: name the component as FILE.py:Variable.")
    if where.endswith(".py") or os.path.sep in where:
        path = os.path.abspath(where if where.endswith(".py") else where + ".py")
        if not os.path.isfile(path):
            raise CommandLineError(f"{path} does not exist.")
        sys.path.insert(0, os.path.dirname(path))
        module = importlib.import_module(os.path.splitext(os.path.basename(path))[0])
    else:
        sys.path.insert(0, os.getcwd())
        module = importlib.import_module(where)
    component = getattr(module, var, None)
    if not isinstance(component, Component):
        raise CommandLineError(f"{where} has no Component named {var!r} (found {component!r}).")
    with open(output, "w", encoding="utf-8") as out:
        json.dump(component.get_graph(), out, indent=4)
    print(f"wrote the graph of {component.name} to {output}")
    return 0


def _replay(args: argparse.Namespace) -> int:
    """``motion replay``: exit 1 if an instance could not be replayed."""
    from motion.tools import replay, replay_report

    candidate = replay.load_component(args.candidate)
    baseline = replay.load_component(args.baseline) if args.baseline else None
    probes = replay.read_probes(args.probes)
    result = replay.replay(candidate, args.instances, probes, baseline)
    json_path, html_path = replay_report.write(result, args.out)
    for item in result.instances:
        what = item.error or f"{len(item.seqs)} update(s) re-applied, {len(item.failures)} failed"
        print(f"{item.instance_id}: {what}")
    print(f"wrote {json_path} and {html_path}")
    return 1 if any(item.error for item in result.instances) else 0


def _run(args: argparse.Namespace) -> int:
    if args.command == "init":
        return _init()
    if args.command == "vis":
        return _vis(args.target, args.output)
    if args.command in cli_updates.NAMES:
        return cli_updates.run(args)
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
    elif args.command == "history":
        print_history(args.instance, args.limit, args.json, args.values)
    elif args.command == "replay":
        return _replay(args)
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
        from motion.tools.metrics import main as serve_metrics

        return serve_metrics(extra)
    if args.command == "dashboard" and not extra:
        from motion.tools.board import serve

        return serve(args.host, args.port, args.read_only, args.imports)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    from motion.floor import connection, settings

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
