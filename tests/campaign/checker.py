"""The campaign's checker: proves the history against what each incarnation applied.

Input: every ``run`` call's record (instance, item, flow, whether the update must
fail, wall-clock start ``t0`` and end ``t1``, outcome), the nemesis's
``clear_instance`` windows with the log of the incarnation each one cleared, and
each instance's final state, failure records and counters, read after quiescence.

An instance's incarnations are numbered from 0; ``clear_instance`` number ``k``
ends incarnation ``k``. A call may have landed in incarnation ``k`` only if
``lo <= k <= hi``, where ``lo`` counts the clears that ended before the call began
and ``hi`` those that began before it returned. Violations, per instance and
incarnation:

- an item applied out of seq order (per flow-control flow, and over the others: rule
  0), or a producer's items applied out of its order;
- an item applied twice (in one incarnation or two), or one nobody enqueued;
- an item in an incarnation it cannot belong to (a cleared incarnation leaking);
- an accepted update (``run`` returned) of the final incarnation neither applied
  nor recorded failed; an update meant to fail applied, or not recorded failed;
- a failure recorded for an update that should have applied;
- a seq of the final incarnation neither applied nor recorded failed;
- a caller error that is not a :class:`~motion.errors.MotionError`.
"""

from __future__ import annotations

import itertools
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import redis

from motion.floor import keys as K
from motion.tools.admin import inspect_state


@dataclass
class Final:
    """What an instance holds after quiescence."""

    log: list[list[Any]]
    failures: list[dict[str, Any]]
    seq: int
    applied: int
    inbox: int


def read_final(client: redis.Redis, names: list[str]) -> dict[str, Final]:
    """Each instance's final log, failure records and counters."""
    out = {}
    for name in names:
        keys = K.InstanceKeys.of(name)
        meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
        log = list(inspect_state(name).get("log", [])) if meta else []
        failures = [json.loads(raw) for raw in client.zrange(keys.failed, 0, -1)]
        out[name] = Final(
            log,
            failures,
            int(meta.get("seq", 0)),
            int(meta.get("applied", 0)),
            client.hlen(keys.inbox),
        )
    return out


#: the "Comp__id incarnation k: " a violation starts with
_WHERE = r"^\w+__\w+( incarnation \d+)?: "


@dataclass
class Verdict:
    """What the checker found: counts, and the violations that fail the run."""

    accepted: int = 0
    applied: int = 0
    failed_ok: int = 0
    caller_errors: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)

    def line(self) -> str:
        errors = dict(self.caller_errors) or 0
        return (
            f"accepted={self.accepted} applied={self.applied} recorded_failed={self.failed_ok} "
            f"caller_errors={errors} violations={len(self.violations)}"
        )

    def kinds(self) -> Counter[str]:
        """The violations by kind (the message with names and numbers taken out)."""
        return Counter(
            re.sub(r"[\w.:-]*\d[\w.:-]*", "#", re.sub(_WHERE, "", v.split("\n")[0]))[:90]
            for v in self.violations
        )


def check(
    history: list[dict[str, Any]],
    clears: dict[str, list[tuple[float, float]]],
    snapshots: dict[str, list[list[Any]]],
    finals: dict[str, Final],
) -> Verdict:
    """Check every instance (see the module docstring)."""
    verdict = Verdict()
    by_name: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in history:
        by_name[record["name"]].append(record)
        if record["outcome"] == "ok":
            verdict.accepted += 1
        else:
            verdict.caller_errors[record["outcome"]] += 1
            if not record.get("motion_error"):
                verdict.violations.append(
                    f"{record['name']}: a caller saw a raw {record['outcome']}, not a motion "
                    f"error: {record.get('message', '')[:200]}"
                )
    for name, final in finals.items():
        _check_instance(
            name,
            by_name.get(name, []),
            clears.get(name, []),
            snapshots.get(name, []),
            final,
            verdict,
        )
    return verdict


def _check_instance(
    name: str,
    records: list[dict[str, Any]],
    clears: list[tuple[float, float]],
    snapshots: list[list[Any]],
    final: Final,
    verdict: Verdict,
) -> None:
    bad = verdict.violations
    items = {r["item"]: r for r in records}
    for r in records:
        r["lo"] = sum(1 for _, end in clears if end <= r["t0"])
        r["hi"] = sum(1 for begin, _ in clears if begin < r["t1"])
    last = len(clears)
    seen: Counter[str] = Counter()
    for k, log in enumerate([*snapshots, final.log]):
        where = f"{name} incarnation {k}"
        # rule 0: an update held by flow control is passed by other flows, so the order
        # is checked per held flow, and over the rest
        for flow, seqs in _by_hold(log).items():
            if any(b <= a for a, b in itertools.pairwise(seqs)):
                bad.append(f"{where}: seqs of {flow} not strictly increasing: {_around(seqs)}")
        order: dict[str, list[int]] = defaultdict(list)
        for seq, item in log:
            seen[item] += 1
            producer, _, n = item.rpartition(":")
            order[producer].append(int(n))
            record = items.get(item)
            if record is None:
                bad.append(f"{where}: item {item} (seq {seq}) was never enqueued")
            elif not record["lo"] <= k <= record["hi"]:
                bad.append(
                    f"{where}: item {item} (seq {seq}) belongs to incarnation(s) "
                    f"{record['lo']}..{record['hi']}: a cleared incarnation leaked"
                )
            elif record["expect"] == "fail":
                bad.append(f"{where}: item {item} (seq {seq}) should have failed but applied")
        for producer, ns in order.items():
            if any(b <= a for a, b in itertools.pairwise(ns)):
                bad.append(f"{where}: producer {producer}'s items out of order: {_around(ns)}")
        if k == last:
            verdict.applied += len(log)
    for item, count in seen.items():
        if count > 1:
            bad.append(f"{name}: item {item} applied {count} times")
    where = f"{name} incarnation {last}"
    in_log = {item for _, item in final.log}
    messages = " ".join(str(f.get("message", "")) for f in final.failures)
    must_fail = {r["item"] for r in records if r["expect"] == "fail"}
    for failure in final.failures:
        text = str(failure.get("message", ""))
        if any(f"{item} " in text for item in must_fail):  # "refusing n:3 on purpose"
            verdict.failed_ok += 1
        else:
            bad.append(
                f"{where}: seq {failure.get('seq')} ({failure.get('flow')}) recorded failed "
                f"with {failure.get('error_type')}: {text[:200]}"
            )
    for r in records:
        if r["outcome"] != "ok" or r["lo"] != last:
            continue
        if r["expect"] == "apply" and r["item"] not in in_log:
            bad.append(f"{where}: accepted {r['flow']} update {r['item']} was never applied")
        if r["expect"] == "fail" and f"{r['item']} " not in messages and r["item"] not in in_log:
            bad.append(f"{where}: update {r['item']} that must fail was not recorded failed")
    accounted = {entry[0] for entry in final.log} | {f.get("seq") for f in final.failures}
    first = 1 if not clears else min((s for s in accounted if s is not None), default=1)
    missing = [s for s in range(first, final.seq + 1) if s not in accounted]
    if missing:
        bad.append(f"{where}: seqs neither applied nor recorded failed: {missing[:10]}")
    if final.applied != final.seq or final.inbox:
        bad.append(f"{where}: applied={final.applied} seq={final.seq} inbox={final.inbox}")


#: item prefixes of the nemesis's flow-control updates, each the flow that holds them
HELD = {"deb": "burst", "held": "held", "due": "later"}


def _by_hold(log: list[list[Any]]) -> dict[str, list[int]]:
    """The log's seqs per held flow (:data:`HELD`), the others under ``"the rest"``."""
    out: dict[str, list[int]] = defaultdict(list)
    for seq, item in log:
        out[HELD.get(str(item).partition(":")[0], "the rest")].append(seq)
    return out


def _around(values: list[int]) -> str:
    """The first place a list stops increasing, with a little context."""
    for i, (a, b) in enumerate(itertools.pairwise(values)):
        if b <= a:
            return str(values[max(i - 2, 0) : i + 4])
    return str(values[:6])
