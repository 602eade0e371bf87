"""The benchmark's services and measuring tools: a redis-server, worker subprocesses, stats.

Everything runs on this machine: a redis-server on a free loopback port (stopped at
the end), Celery workers started with ``celery -A workers worker -I bench_components``
(the command a user runs), and small helpers to time things and summarize samples.
Every wait has a deadline, so a broken system fails a workload instead of hanging.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent


class BenchError(RuntimeError):
    """A workload could not run or found a wrong result."""


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.002
) -> Any:
    """Poll ``condition`` until truthy; raise :class:`BenchError` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise BenchError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def percentile(samples: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by nearest rank; NaN for no samples."""
    if not samples:
        return float("nan")
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


def median(values: list[float]) -> float:
    """Median of ``values`` (NaN for none)."""
    return statistics.median(values) if values else float("nan")


def timed_calls(call: Callable[[int], Any], n: int) -> list[float]:
    """Call ``call(i)`` ``n`` times; the duration of each call in milliseconds."""
    out = []
    clock = time.perf_counter
    for i in range(n):
        start = clock()
        call(i)
        out.append((clock() - start) * 1000)
    return out


def redis_binary() -> str:
    """``redis-server`` from PATH (``benchmarks/run.sh`` installs it)."""
    found = shutil.which("redis-server")
    if not found:
        raise BenchError("redis-server not found: apt-get install redis-server")
    return found


class RedisServer:
    """A redis-server on a free loopback port, AOF on (every second) as deployed
    (``aof=False``: off, for the separate commands that time single scripts)."""

    def __init__(self, folder: Path, aof: bool = True) -> None:
        self.folder = folder
        self.aof = aof
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port)

    def start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            redis_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            "everysec",
            "--logfile",
            str(self.folder / "redis.log"),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._answers, 15, f"redis-server on port {self.port}", interval=0.02)
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise BenchError(f"redis-server exited: {(self.folder / 'redis.log').read_text()}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def version(self) -> str:
        return str(self.client().info("server")["redis_version"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


@contextlib.contextmanager
def scratch_server(prefix: str) -> Iterator[RedisServer]:
    """A private redis-server with no AOF in a new temporary folder (named ``prefix``...),
    for the separate commands that time single calls; stopped and removed after."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    server = RedisServer(folder, aof=False).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(folder, ignore_errors=True)


def motion_env(url: str, **extra: str) -> dict[str, str]:
    """Environment of a process using this project's motion against ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    env.update(
        MOTION_REDIS_URL=url,
        MOTION_INPROCESS_WORKER="0",
        PYTHONPATH=os.pathsep.join([str(HERE), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


#: the workers started and not yet stopped (W10 reads their memory)
RUNNING: list[Worker] = []


def rss_mb(pids: list[int]) -> float:
    """Resident memory of ``pids`` together, in MB (``VmRSS`` of ``/proc/<pid>/status``)."""
    total_kb = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kb += int(line.split()[1])
    return total_kb / 1024


class Worker:
    """``python -m celery -A workers worker -I bench_components`` as a subprocess."""

    def __init__(
        self, url: str, log_dir: Path, pool: str = "prefork", concurrency: int = 2
    ) -> None:
        self.name = f"bench-{pool}-{free_port()}@localhost"
        self.log = log_dir / f"worker-{pool}-{concurrency}.log"
        self.pool, self.concurrency = pool, concurrency
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-I",
            "bench_components",
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            self.name,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "WARNING",
            "-f",
            str(self.log),
        ]
        self.env = motion_env(url)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Worker:
        """Start the worker and return once it consumes every motion queue."""
        from motion.floor.celery_app import get_app, task_queue
        from motion.floor.wakeup import CONTROL_QUEUE, queues_of

        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis.from_url(self.env["MOTION_REDIS_URL"])
        queues = [CONTROL_QUEUE, *queues_of("BenchCounter")]
        keys = [f"bench:probe:{self.name}:{q}" for q in queues]
        for key, queue in zip(keys, queues, strict=True):
            get_app().send_task(
                "bench.probe", args=[key], queue=task_queue(queue), ignore_result=True
            )

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise BenchError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
            return bool(client.exists(*keys) == len(keys))

        wait_for(ready, 60, f"worker {self.name} to consume", interval=0.05)
        client.delete(*keys)
        RUNNING.append(self)
        return self

    @property
    def pids(self) -> list[int]:
        """The main process and its pool children (for profilers)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [self.proc.pid, *(int(p) for p in out.stdout.split())]

    def stop(self) -> None:
        if self in RUNNING:
            RUNNING.remove(self)
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            for pid in self.pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
            self.proc.wait(10)
        self.proc = None
