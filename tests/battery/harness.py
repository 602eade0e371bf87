"""The fault battery's machinery: load producers, recovery clocks, the invariant check.

A scenario starts workers on its own redis-server, starts a :class:`Load` (several
producer processes over at least 100 instances), injects its faults while the
load runs, stops the load, waits for every instance to drain, and then checks,
per instance: updates applied = 1..N in order, each once; every update a caller
saw succeed is in the state exactly once; each producer's updates kept their
order; the inbox is empty; nothing is pending; no failure was recorded. The
result is one :class:`Verdict` line per scenario.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from motion.floor import indexes
from motion.floor import keys as K
from motion.floor.serde import DEFAULT_SERIALIZER
from tests.support import COMPONENTS, motion_env, wait_for

COMPONENT = "Ledger"
#: worker modules: Ledger plus the battery's extra flows
MODULES = ["ledger", "battery_ledger"]


@dataclass(frozen=True)
class Size:
    """How big a scenario runs: instances, producers, their rate, how long, how many faults."""

    name: str
    instances: int
    producers: int
    rate: float  # updates per second per producer
    seconds: float  # load before and after the faults
    faults: int  # how many times a repeated fault is injected


SIZES = {
    "quick": Size("quick", instances=100, producers=2, rate=40, seconds=2.0, faults=2),
    "full": Size("full", instances=150, producers=4, rate=40, seconds=6.0, faults=4),
}


def battery_size() -> Size:
    """``MOTION_BATTERY_SIZE`` (``quick`` or ``full``; ``full`` by default)."""
    name = os.environ.get("MOTION_BATTERY_SIZE", "full")
    if name not in SIZES:
        raise ValueError(f"MOTION_BATTERY_SIZE={name!r}: use one of {sorted(SIZES)}")
    return SIZES[name]


class Load:
    """Producer subprocesses running Ledger flows until :meth:`stop`."""

    def __init__(
        self,
        url: str,
        folder: Path,
        size: Size,
        prefix: str = "load",
        env: dict[str, str] | None = None,
    ) -> None:
        self.url, self.folder, self.size, self.prefix = url, folder, size, prefix
        self.env = env or {}
        self.names = [K.instance_name(COMPONENT, f"{prefix}-{i}") for i in range(size.instances)]
        self.stop_file = folder / "stop"
        self.procs: list[subprocess.Popen[bytes]] = []
        self.outs: list[Path] = []
        self.summary: dict[str, Any] = {}

    def start(self) -> Load:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.stop_file.unlink(missing_ok=True)
        env = motion_env(self.url, **self.env)
        for p in range(self.size.producers):
            out = self.folder / f"producer-{p}.json"
            self.outs.append(out)
            args = [
                sys.executable,
                "-m",
                "battery_producer",
                "--id",
                f"p{p}",
                "--out",
                str(out),
                "--stop",
                str(self.stop_file),
                "--instances",
                str(self.size.instances),
                "--rate",
                str(self.size.rate),
                "--seconds",
                "300",
                "--prefix",
                self.prefix,
            ]
            log = (self.folder / f"producer-{p}.log").open("wb")
            self.procs.append(
                subprocess.Popen(args, env=env, cwd=COMPONENTS, stdout=log, stderr=log)
            )
        return self

    def stop(self, timeout: float = 60) -> dict[str, Any]:
        """Stop the producers and merge their summaries."""
        self.stop_file.write_text("stop")
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                code = proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError("a producer did not stop in time") from None
            if code != 0:
                logs = "\n".join(p.read_text()[-2000:] for p in self.folder.glob("producer-*.log"))
                raise AssertionError(f"a producer exited with {code}:\n{logs}")
        acked: dict[str, list[str]] = defaultdict(list)
        uncertain: dict[str, list[str]] = defaultdict(list)
        errors: Counter[str] = Counter()
        messages: list[str] = []
        regressions = sent = 0
        for out in self.outs:
            part = json.loads(out.read_text())
            for name, items in part["acked"].items():
                acked[K.instance_name(COMPONENT, name)] += items
            for name, items in part["uncertain"].items():
                uncertain[K.instance_name(COMPONENT, name)] += items
            errors.update(part["errors"])
            messages += part["messages"]
            regressions += part["regressions"]
            sent += part["sent"]
        self.summary = {
            "acked": acked,
            "uncertain": uncertain,
            "errors": errors,
            "messages": messages,
            "regressions": regressions,
            "sent": sent,
        }
        return self.summary

    def kill(self) -> None:
        """Kill any producer still running (cleanup after a failed scenario)."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


def seqs_now(client: redis.Redis, names: list[str]) -> dict[str, int]:
    """The last enqueued seq of each instance."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hget(K.InstanceKeys.of(name).meta, "seq")
    return {n: int(v or 0) for n, v in zip(names, pipe.execute(), strict=True)}


def applied_now(client: redis.Redis, names: list[str]) -> dict[str, int]:
    """The last applied seq of each instance."""
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hget(K.InstanceKeys.of(name).meta, "applied")
    return {n: int(v or 0) for n, v in zip(names, pipe.execute(), strict=True)}


def wait_applied(
    client: redis.Redis,
    targets: dict[str, int],
    timeout: float,
    what: str,
    tick: Callable[[], object] | None = None,
) -> float:
    """Wait until each instance applied its target seq; return the seconds waited.

    ``tick`` runs on every poll (a supervisor restarting dead workers, say).
    """
    started = time.monotonic()
    names = list(targets)

    def done() -> bool:
        if tick is not None:
            tick()
        try:
            now = applied_now(client, names)
        except redis.ConnectionError:
            return False
        return all(now[n] >= t for n, t in targets.items())

    try:
        wait_for(done, timeout, what, interval=0.05)
    except AssertionError as exc:
        late = [n for n, v in applied_now(client, names).items() if v < targets[n]]
        raise AssertionError(f"{exc}\n{diagnose(client, late)}") from None
    return time.monotonic() - started


def diagnose(client: redis.Redis, names: list[str]) -> str:
    """What a stuck instance looks like in Redis: meta, lease, inbox, pending, queues."""
    lines = [
        f"{len(names)} instance(s) behind; queues: "
        + str({q.decode(): client.llen(q) for q in client.scan_iter("motion.*", _type="list")})
    ]
    for name in names[:5]:
        keys = K.InstanceKeys.of(name)
        meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
        meta = {k: v for k, v in meta.items() if not k.startswith(("last:", "pending:"))}
        lines.append(
            f"{name}: meta={meta} lease={client.get(keys.lease)!r} "
            f"ttl={client.pttl(keys.lease)} inbox={client.hlen(keys.inbox)} "
            f"pending_score={client.zscore(K.PENDING, name)} now={int(time.time() * 1000)}"
        )
    return "\n".join(lines)


def wait_drained(client: redis.Redis, names: list[str], timeout: float) -> float:
    """Wait until every instance applied everything enqueued and nothing is pending."""
    started = time.monotonic()

    def done() -> bool:
        enqueued, applied = seqs_now(client, names), applied_now(client, names)
        return enqueued == applied and indexes.zcard(client, K.PENDING) == 0

    wait_for(done, timeout, "every instance to drain", interval=0.1)
    return time.monotonic() - started


def read_ledger(client: redis.Redis, name: str) -> tuple[list[int], list[str]]:
    """``state['seqs']`` and ``state['items']`` of a Ledger instance, read raw."""
    raw = client.hmget(K.InstanceKeys.of(name).state, ["seqs", "items"])
    if raw[0] is None:
        return [], []
    return DEFAULT_SERIALIZER.loads(raw[0]), DEFAULT_SERIALIZER.loads(raw[1])


@dataclass
class Verdict:
    """What a scenario found, and the problems that fail it."""

    scenario: str
    enqueued: int = 0
    applied: int = 0
    lost: int = 0
    duplicated: int = 0
    retried: int = 0  # duplicates made by the Redis client retrying an enqueue (known gap)
    reordered: int = 0
    recovery: float | None = None
    caller_errors: int = 0
    takeovers: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def line(self) -> str:
        """The one-line report."""
        recovery = "-" if self.recovery is None else f"{self.recovery:.2f}s"
        notes = f" ({'; '.join(self.notes)})" if self.notes else ""
        retried = f" ({self.retried} by enqueue retry)" if self.retried else ""
        return (
            f"{self.scenario}: enqueued={self.enqueued} applied={self.applied} lost={self.lost} "
            f"duplicated={self.duplicated}{retried} reordered={self.reordered} recovery={recovery} "
            f"caller_errors={self.caller_errors} takeovers={self.takeovers}{notes}"
        )


def check(
    client: redis.Redis,
    scenario: str,
    names: list[str],
    acked: dict[str, list[str]],
    uncertain: dict[str, list[str]] | None = None,
) -> Verdict:
    """Check the invariant on every instance in ``names`` (see the module docstring)."""
    verdict = Verdict(scenario)
    uncertain = uncertain or {}
    for name in names:
        keys = K.InstanceKeys.of(name)
        meta = {k.decode(): v.decode() for k, v in client.hgetall(keys.meta).items()}
        seq, applied = int(meta.get("seq", 0)), int(meta.get("applied", 0))
        seqs, items = read_ledger(client, name)
        verdict.enqueued += seq
        verdict.applied += len(seqs)
        missing = set(range(1, seq + 1)) - set(seqs)
        counts = Counter(items)
        lost_acked = [i for i in acked.get(name, []) if counts[i] == 0]
        verdict.lost += len(missing) + len(lost_acked)
        verdict.duplicated += len(seqs) - len(set(seqs))
        verdict.duplicated += sum(c - 1 for c in counts.values() if c > 1)
        verdict.reordered += sum(1 for a, b in itertools.pairwise(seqs) if b < a)
        by_producer: dict[str, list[int]] = defaultdict(list)
        for item in items:
            producer, _, n = item.rpartition(":")
            if n.isdigit():
                by_producer[producer].append(int(n))
        verdict.reordered += sum(
            1 for order in by_producer.values() for a, b in itertools.pairwise(order) if b < a
        )
        # One run() enqueued twice: the two copies are adjacent in that producer's order,
        # since the producer was blocked in that run() while its client retried.
        verdict.retried += sum(
            1 for order in by_producer.values() for a, b in itertools.pairwise(order) if a == b
        )
        known = set(acked.get(name, [])) | set(uncertain.get(name, []))
        phantom = [i for i in items if i not in known]
        if phantom:
            verdict.problems.append(f"{name}: items nobody enqueued: {phantom[:3]}")
        if seqs != list(range(1, seq + 1)):
            verdict.problems.append(f"{name}: seqs {seqs[:10]}... != 1..{seq}")
        if lost_acked:
            verdict.problems.append(f"{name}: acknowledged updates missing: {lost_acked[:3]}")
        if applied != seq:
            verdict.problems.append(f"{name}: applied={applied} seq={seq}")
        if client.hlen(keys.inbox):
            verdict.problems.append(f"{name}: {client.hlen(keys.inbox)} entries left in the inbox")
        if client.zcard(keys.failed):
            failure = client.zrange(keys.failed, 0, 0)[0].decode()
            verdict.problems.append(f"{name}: recorded failures, e.g. {failure[:300]}")
    pending = indexes.zcard(client, K.PENDING)  # all its parts, on a cluster
    if pending:
        verdict.problems.append(f"{pending} instance(s) still in {K.PENDING}")
    if verdict.lost or verdict.duplicated > verdict.retried or verdict.reordered:
        verdict.problems.append(
            f"lost={verdict.lost} duplicated={verdict.duplicated} reordered={verdict.reordered}"
        )
    verdict.takeovers = int(indexes.counters(client, K.stats(COMPONENT)).get(b"takeovers", 0))
    return verdict


def advance(client: redis.Redis, names: list[str], updates: int, timeout: float = 60) -> None:
    """Wait until the load enqueued ``updates`` more updates (the load is flowing)."""
    start = sum(seqs_now(client, names).values())
    wait_for(
        lambda: sum(seqs_now(client, names).values()) >= start + updates,
        timeout,
        f"the load to enqueue {updates} more updates",
        interval=0.05,
    )


def finish(
    client: redis.Redis,
    scenario: str,
    load: Load,
    *,
    extra_acked: dict[str, list[str]] | None = None,
    allowed_errors: tuple[str, ...] = (),
    drain_timeout: float = 120,
) -> Verdict:
    """Stop the load, wait for the drain, check the invariant and the callers' errors."""
    summary = load.stop()
    wait_drained(client, load.names, drain_timeout)
    acked = summary["acked"]
    for name, items in (extra_acked or {}).items():
        acked[name] = [*acked.get(name, []), *items]
    verdict = check(client, scenario, load.names, acked, summary["uncertain"])
    verdict.caller_errors = sum(summary["errors"].values())
    unexpected = {k: v for k, v in summary["errors"].items() if k not in allowed_errors}
    if unexpected:
        verdict.problems.append(f"callers saw errors {unexpected}: {summary['messages']}")
    if summary["regressions"]:
        verdict.problems.append(f"reads saw the version go back {summary['regressions']} times")
    return verdict


class Stalls:
    """Long ``stall`` updates the scenarios inject into load instances to catch a worker mid-op."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.acked: dict[str, list[str]] = defaultdict(list)
        self.count = 0

    def start(self, client: redis.Redis, name: str, sleep: float) -> tuple[Path, int]:
        """Enqueue a stall on instance ``name``; return its marker file and seq."""
        import battery_ledger  # noqa: F401  (adds the stall flow to Ledger)
        from ledger import Ledger  # the components folder is on sys.path in the battery

        self.count += 1
        marker = self.folder / f"stall-{self.count}"
        item = f"t:{self.count}"
        instance_id = K.split_instance_name(name)[1]
        Ledger(instance_id).run("stall", {"item": item, "sleep": sleep, "marker": str(marker)})
        self.acked[name].append(item)
        seq = int(client.hget(K.InstanceKeys.of(name).meta, "last:stall") or 0)
        return marker, seq


def running_pid(marker: Path, timeout: float = 60) -> int:
    """Wait for a stall to start; the pid of the process running it."""
    wait_for(lambda: marker.exists() and marker.read_text(), timeout, f"{marker.name} to run")
    return int(marker.read_text())
