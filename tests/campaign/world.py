"""One campaign run's world: its redis-server, subprocess workers, producers, supervisor.

The world starts everything on free loopback ports in a temporary folder, restarts
workers that died (as a process supervisor would), collects the producers' histories,
and waits for quiescence: every instance applied what was enqueued, nothing pending,
every worker alive, within a deadline.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from motion.floor import keys as K
from tests.battery.harness import applied_now, diagnose, seqs_now
from tests.campaign.schedule import LEASE_SECONDS
from tests.support import COMPONENTS, RedisServer, Worker, motion_env, wait_for

#: the lease and sweep periods of the campaign's workers (a crash costs 2 s)
FAST = {"MOTION_LEASE_SECONDS": str(LEASE_SECONDS), "MOTION_SWEEP_SECONDS": "1"}
OLD = ["campaign_journal"]
NEW = ["campaign_journal", "campaign_journal_v2"]


@dataclass(frozen=True)
class Size:
    """How big a run is: instances, producers and their rate, workers, seconds of faults."""

    name: str
    journals: int
    hooked: int
    producers: int
    rate: float
    workers: int
    seconds: float
    gap: float  # mean seconds between faults
    quiesce: float  # deadline for quiescence after the faults


SIZES = {
    "quick": Size("quick", 8, 4, 3, 20, 2, 9.0, 0.8, 45),
    "long": Size("long", 40, 20, 6, 20, 3, 150.0, 1.5, 240),
}


class World:
    """The processes of one run (see the module docstring)."""

    def __init__(self, folder: Path, size: Size, seed: int, crash_safe: bool) -> None:
        self.folder, self.size, self.seed = folder, size, seed
        extra = ["--appendfsync", "always"] if crash_safe else []
        self.server = RedisServer(folder / "redis", *extra)
        self.control = folder / "control"
        self.workers: list[Worker] = []
        self.modules = OLD
        self.restarts: list[str] = []
        self.producers: list[subprocess.Popen[bytes]] = []
        self.names = [K.instance_name("Journal", f"j{i}") for i in range(size.journals)]
        self.names += [K.instance_name("HookedJournal", f"h{i}") for i in range(size.hooked)]
        self._count = 0

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> redis.Redis:
        """A plain client on the run's server."""
        return self.server.client()

    def start(self) -> World:
        self.server.start()
        self.control.mkdir(parents=True, exist_ok=True)
        for _ in range(self.size.workers):
            self.add_worker(wait=False)
        for worker in self.workers:
            wait_ready(worker)
        return self

    def add_worker(self, wait: bool = True, modules: list[str] | None = None) -> Worker:
        """Start a worker with the current version's modules (prefork, 2 children)."""
        self._count += 1
        worker = Worker(
            self.url,
            modules or self.modules,
            self.folder / "logs",
            concurrency=2,
            name=f"w{self._count}",
            env=FAST,
        )
        self.workers.append(worker)
        worker.start(wait=False)
        if wait:
            wait_ready(worker)
        return worker

    def live(self) -> list[Worker]:
        """Workers whose process is running (paused ones included)."""
        return [w for w in self.workers if w.proc is not None and w.proc.poll() is None]

    def supervise(self) -> None:
        """Restart any worker that exited, with the current version's modules."""
        for worker in list(self.workers):
            if worker.proc is None or worker.proc.poll() is not None:
                if worker.proc is not None:
                    died = [ln for ln in worker.log.read_text().splitlines() if "CRITICAL" in ln]
                    self.restarts.append(died[-1].split("] ", 1)[-1][:160] if died else "exited")
                self.workers.remove(worker)
                self.add_worker(wait=False)

    def start_producers(self) -> None:
        env = motion_env(self.url)
        for p in range(self.size.producers):
            args = [
                sys.executable,
                "-m",
                "campaign_producer",
                "--id",
                f"p{p}",
                "--seed",
                str(self.seed),
                "--out",
                str(self.folder / f"producer-{p}.json"),
                "--control",
                str(self.control),
                "--instances",
                ",".join(self.names),
                "--rate",
                str(self.size.rate),
            ]
            log = (self.folder / f"producer-{p}.log").open("wb")
            self.producers.append(
                subprocess.Popen(args, env=env, cwd=COMPONENTS, stdout=log, stderr=log)
            )

    def stop_producers(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Stop the producers; their merged histories."""
        (self.control / "stop").write_text("stop")
        deadline = time.monotonic() + timeout
        history: list[dict[str, Any]] = []
        for p, proc in enumerate(self.producers):
            try:
                code = proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                raise AssertionError(f"producer {p} did not stop in {timeout}s") from None
            if code != 0:
                log = (self.folder / f"producer-{p}.log").read_text()[-3000:]
                raise AssertionError(f"producer {p} exited with {code}:\n{log}")
            history += json.loads((self.folder / f"producer-{p}.json").read_text())
        return history

    def quiesce(self, timeout: float) -> str | None:
        """Wait for every instance applied == seq, nothing pending, workers alive.

        Returns ``None`` once quiescent, else what was still wrong at the deadline.
        """
        client = self.client()

        def progress() -> tuple[dict[str, int], dict[str, int], int]:
            try:
                seqs, applied = seqs_now(client, self.names), applied_now(client, self.names)
                return seqs, applied, client.zcard(K.PENDING)
            except redis.RedisError:
                return {}, {"?": 1}, -1

        def quiet() -> bool:
            self.supervise()
            seqs, applied, pending = progress()
            if not (seqs == applied and pending == 0 and len(self.live()) >= self.size.workers):
                return False
            try:  # and nothing held by flow control (debounces, pauses, timers) left
                return not any(client.exists(K.InstanceKeys.of(n).parked) for n in self.names)
            except redis.RedisError:
                return False

        try:
            wait_for(quiet, timeout, "quiescence", interval=0.1)
            return None
        except AssertionError:
            seqs, applied, pending = progress()
            behind = [n for n in self.names if applied.get(n, 0) < seqs.get(n, 0)]
            return f"not quiescent after {timeout}s: {pending} pending\n" + diagnose(
                client, behind or self.names[:1]
            )

    def close(self) -> None:
        for proc in self.producers:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        for worker in self.workers:
            worker.kill(signal.SIGCONT)  # a paused worker must see its SIGKILL
            worker.kill()
        self.server.stop()


def wait_ready(worker: Worker, timeout: float = 60) -> None:
    """Wait until ``worker`` logged that it is ready (it exiting first fails at once)."""
    wait_for(worker._ready, timeout, f"worker {worker.name} to be ready", interval=0.05)
