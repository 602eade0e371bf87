"""The ``motion`` commands on one instance's updates: dead letters, and pauses.

::

    motion failed Summary__user-1 [--json]    its dead letters (failed updates kept)
    motion retry Summary__user-1 7 [--wait S] retry dead letter #7; print its ticket
    motion drop Summary__user-1 7             remove dead letter #7
    motion pause Summary__user-1 [--flow F]   hold its updates (of flow F) until resumed
    motion resume Summary__user-1 [--flow F]  release them, in their order

Each names the instance as the other commands do (``Component__instance_id``) and
needs no component code: props are read with the component's serializer when its
module is imported (``-I``), else the default one; a retry re-enqueues the update as
it was stored (or re-applies it in place when its flow is paused on it). Pauses are
:mod:`motion.caller.control`'s. :mod:`motion.tools.cli` adds these commands and hands them their
arguments.

Tool; uses the caller road (control, letters, ticket), the floor (connection, errors,
keys).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime

from motion.caller import control, letters
from motion.floor import keys as K
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import InstanceNotFoundError
from motion.floor.inbox import check_flow_name

#: the commands this module runs
NAMES = ("failed", "retry", "drop", "pause", "resume")

Command = Callable[[str, str, str], argparse.ArgumentParser]


def add_commands(command: Command) -> None:
    """Add the commands to the ``motion`` parser (``command(name, help, example)``)."""
    cmd = command(
        "failed",
        "List an instance's dead letters: failed updates kept until retried or dropped "
        "(the newest 1,000), with their error and props.",
        "motion failed Summary__user-1 --json",
    )
    _instance(cmd)
    cmd.add_argument("--json", action="store_true", help="print JSON instead of lines")
    cmd = command(
        "retry",
        "Retry a dead letter: in place if its flow is paused on it, else re-enqueued with "
        "a new seq (as it was stored; a ticket of the old seq follows it); print its ticket.",
        "motion retry Summary__user-1 7 --wait 30",
    )
    _instance(cmd)
    cmd.add_argument("seq", type=int, help="the dead letter's seq (see `motion failed`)")
    cmd.add_argument(
        "--wait", type=float, default=None, metavar="S", help="then wait up to S seconds"
    )
    cmd = command(
        "drop",
        "Remove a dead letter (its update stays unapplied; a flow paused on it goes on).",
        "motion drop Summary__user-1 7",
    )
    _instance(cmd)
    cmd.add_argument("seq", type=int, help="the dead letter's seq (see `motion failed`)")
    for name, what in (
        ("pause", "Hold an instance's updates (of one flow, or all) until resumed; enqueues "
         "are still accepted (up to MOTION_MAX_PENDING), other flows go on."),
        ("resume", "Release a pause: the held updates are applied in their order. A flow "
         "stopped at a failed update stays so: retry or drop it."),
    ):  # fmt: skip
        cmd = command(name, what, f"motion {name} Summary__user-1 --flow summarize")
        _instance(cmd)
        cmd.add_argument("--flow", default=None, help="only this flow (default: every flow)")


def run(args: argparse.Namespace) -> int:
    """Run the command ``args`` name (one of :data:`NAMES`); the exit status."""
    for module in getattr(args, "imports", None) or []:
        importlib.import_module(module)
    keys = _existing(args.instance)
    if args.command == "failed":
        found = letters.dead_letters(keys)
        if args.json:
            shown = {"dropped": found.dropped, "failed": [x.as_dict() for x in found]}
            print(json.dumps(shown, indent=2, default=repr))
            return 0
        for letter in found:
            when = _when(letter.failed_at)
            props = letter.props if letter.props is not None else f"({letter.props_error})"
            print(f"#{letter.seq} {letter.flow} op {letter.op}{when}: {letter.error}")
            print(f"    props: {props!r}")
        extra = f" ({found.dropped} older not kept)" if found.dropped else ""
        print(f"{len(found)} dead letter(s) in {keys.name}{extra}", file=sys.stderr)
    elif args.command == "retry":
        ticket = letters.retry_stored(keys, args.seq)
        how = "retried in place" if ticket.seq == args.seq else f"re-enqueued as #{ticket.seq}"
        print(f"{keys.name}: #{args.seq} {how}; ticket {ticket}")
        if args.wait is not None:
            ticket.wait(args.wait)
            print(f"{keys.name}: #{ticket.seq} applied")
    elif args.command == "drop":
        letters.drop_letter(keys, args.seq)
        print(f"{keys.name}: dropped dead letter #{args.seq}")
    else:  # pause, resume
        what = "every flow" if args.flow is None else f"flow {check_flow_name(args.flow)!r}"
        pausing = args.command == "pause"
        if control.hold(keys, pausing, args.flow):
            print(f"{keys.name}: {what} {'paused' if pausing else 'resumed'}")
        else:
            print(f"{keys.name}: {what} was {'held' if pausing else 'not paused'} already")
    return 0


def _instance(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("instance", help="instance name, Component__instance_id")
    cmd.add_argument(
        "-I",
        "--import",
        dest="imports",
        action="append",
        default=[],
        help="a module defining the component (its serializer then reads the props)",
    )


def _existing(name: str) -> K.InstanceKeys:
    """The keys of instance ``name`` (``Comp__id``); raises if it does not exist."""
    K.split_instance_name(name)  # InvalidInstanceIdError for a name without "__"
    keys = K.InstanceKeys.of(name)
    with translate_errors(f"reading {name}", name):
        if not get_redis(name).exists(keys.meta):
            raise InstanceNotFoundError(f"{name} does not exist (see `motion list`).")
    return keys


def _when(at: float | None) -> str:
    if at is None:
        return ""
    return " at " + datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
