"""Fixtures of the fault battery: its own redis-server per scenario, workers, loads, the report.

The battery runs only when asked: ``pytest -m battery`` (``MOTION_BATTERY_SIZE=quick``
for the short variant of every scenario). Each scenario prints one line: updates
enqueued, applied, lost, duplicated, reordered, and the recovery time; the lines
are repeated at the end of the run and appended to ``$MOTION_BATTERY_REPORT``
when that is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.battery.harness import MODULES, Load, Size, Verdict, battery_size
from tests.conftest import reset_motion
from tests.selection import repeat_lines, skip_unless_selected
from tests.support import COMPONENTS, RedisServer, Worker, clear_motion_env

if str(COMPONENTS) not in sys.path:
    sys.path.insert(0, str(COMPONENTS))

#: worker settings for speed: a crashed worker costs 2 s, the sweeper looks every second
LEASE_SECONDS = 2.0
SWEEP_SECONDS = 1.0
FAST = {"MOTION_LEASE_SECONDS": str(LEASE_SECONDS), "MOTION_SWEEP_SECONDS": str(SWEEP_SECONDS)}

_LINES: list[str] = []
_REPORT = os.environ.get("MOTION_BATTERY_REPORT")
_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the battery unless ``-m`` selects it (it is for a dedicated run)."""
    reason = "fault battery: run it with -m battery"

    def belongs(item: pytest.Item) -> bool:
        return _HERE in Path(str(item.fspath)).resolve().parents

    skip_unless_selected(config, items, "battery", reason, belongs)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat the scenario lines at the end of the run."""
    repeat_lines(terminalreporter, "fault battery", _LINES)


class Battery:
    """One scenario's world: a redis-server, workers, loads; all stopped afterwards."""

    def __init__(self, folder: Path, server: RedisServer, size: Size) -> None:
        self.folder, self.server, self.size = folder, server, size
        self.workers: list[Worker] = []
        self.loads: list[Load] = []
        self.restarts: list[str] = []
        #: set by a scenario on another broker (MOTION_BROKER_URL for workers and producers)
        self.broker_env: dict[str, str] = {}
        self._specs: dict[str, tuple[str, dict[str, Any]]] = {}

    @property
    def url(self) -> str:
        return self.server.url

    def client(self) -> redis.Redis:
        """A plain client on the scenario's server (retries while it restarts)."""
        return self.server.client()

    def worker(
        self,
        name: str,
        pool: str = "prefork",
        concurrency: int = 2,
        env: dict[str, str] | None = None,
        wait: bool = True,
    ) -> Worker:
        """Start a worker subprocess with the battery's fast lease and sweep settings."""
        worker = Worker(
            self.url,
            MODULES,
            self.folder / "logs",
            pool=pool,
            concurrency=concurrency,
            name=name,
            env={**FAST, **self.broker_env, **(env or {})},
        )
        self.workers.append(worker)
        self._specs[worker.name] = (name, {"pool": pool, "concurrency": concurrency, "env": env})
        return worker.start(wait=wait)

    def supervise(self) -> list[str]:
        """Restart any worker that exited, as a process supervisor would; say why each died."""
        reasons = []
        for worker in list(self.workers):
            if worker.proc is not None and worker.proc.poll() is not None:
                died = [line for line in worker.log.read_text().splitlines() if "CRITICAL" in line]
                reasons.append(died[-1].split("] ", 1)[-1][:160] if died else "exited")
                worker.proc = None
                self.workers.remove(worker)
                name, options = self._specs[worker.name]
                self.worker(name, **options)
        self.restarts += reasons
        return reasons

    def load(self, prefix: str = "load") -> Load:
        """Start the scenario's producers."""
        folder = self.folder / f"load-{prefix}"
        load = Load(self.url, folder, self.size, prefix, env=self.broker_env).start()
        self.loads.append(load)
        return load

    def report(self, verdict: Verdict) -> Verdict:
        """Print and keep the scenario's line; fail the test on any problem."""
        broker = self.broker_env.get("MOTION_BROKER_URL", "").split(":", 1)[0]
        line = f"[{self.size.name}{', ' + broker if broker else ''}] {verdict.line()}"
        _LINES.append(line)
        print(line)
        if _REPORT:
            with open(_REPORT, "a") as out:
                out.write(line + "\n")
        assert not verdict.problems, "\n".join(verdict.problems[:20])
        return verdict

    def close(self) -> None:
        for load in self.loads:
            load.kill()
        for worker in self.workers:
            worker.kill()


@pytest.fixture
def battery(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Battery]:
    """A fresh redis-server (AOF on) for one scenario; this process's motion points at it."""
    size = battery_size()  # read before the MOTION_* variables are cleared
    server = RedisServer(tmp_path / "redis").start()
    clear_motion_env(monkeypatch, server.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    for key, value in FAST.items():
        monkeypatch.setenv(key, value)
    reset_motion()
    world = Battery(tmp_path, server, size)
    try:
        yield world
    finally:
        world.close()
        server.stop()
        reset_motion()
