"""A real RabbitMQ broker for the tests: one rabbitmq-server per test session.

The node listens on free loopback ports (AMQP, Erlang distribution, and an epmd of
its own through ``ERL_EPMD_PORT``), keeps its database, logs and Erlang cookie in a
temporary folder it owns, and runs as the ``rabbitmq`` user when the tests run as
root (as Debian's package expects). It is stopped by node name (``rabbitmqctl -n
NODE stop``) and then by PID, always. Tests that need it are skipped, saying why,
only when rabbitmq-server is not installed (``tests/run.sh`` installs Debian's).

Waiting is on a condition with a deadline (an AMQP connection answering), never a
fixed sleep.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from motion.floor.embedded import free_port
from tests.support import wait_for

#: where Debian's rabbitmq-server package puts the scripts (the /usr/sbin wrappers
#: would replace our environment)
RABBIT_BIN = Path("/usr/lib/rabbitmq/bin")
SERVER = RABBIT_BIN / "rabbitmq-server"
CTL = RABBIT_BIN / "rabbitmqctl"
#: the deployed settings; the tests' node runs with them too
DEPLOY_CONF = Path(__file__).resolve().parent.parent / "deploy" / "rabbitmq.conf"
#: rabbitmq-server's start-up on a loaded 2-core machine takes several seconds
START_TIMEOUT = 120.0


def missing_reason() -> str | None:
    """Why no RabbitMQ node can run here, or ``None`` when one can."""
    if not SERVER.exists() or not shutil.which("epmd"):
        return (
            f"rabbitmq-server is not installed ({SERVER} missing): `bash tests/run.sh` "
            "installs Debian's rabbitmq-server with apt when run as root"
        )
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("rabbitmq")
        except KeyError:
            return "running as root but there is no rabbitmq user to run rabbitmq-server as"
    return None


class RabbitServer:
    """A rabbitmq-server node on free loopback ports, everything in its own folder."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="motion-rabbit-"))
        ports: set[int] = set()
        while len(ports) < 3:
            ports.add(free_port())
        self.port, self.dist_port, self.epmd_port = sorted(ports)
        self.node = f"motion-test-{self.port}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        self._as_user: list[str] = []
        if os.geteuid() == 0:  # Debian's package runs the broker as its own user
            self._as_user = ["setpriv", "--reuid=rabbitmq", "--regid=rabbitmq", "--init-groups"]
            self._as_user.append("--")
        # deploy/rabbitmq.conf, then this machine's port and logs (later lines win)
        (self.folder / "rabbitmq.conf").write_text(
            DEPLOY_CONF.read_text() + "\n# the tests' node\n"
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "log.console = false\n"
            "log.file.level = info\n"
            # the shared test machine may be short of disk: never block publishers
            "disk_free_limit.absolute = 1MB\n"
        )
        (self.folder / "enabled_plugins").write_text("[].\n")
        (self.folder / "rabbitmq-env.conf").write_text("")
        if self._as_user:
            user = pwd.getpwnam("rabbitmq")
            for path in [self.folder, *self.folder.iterdir()]:
                os.chown(path, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        """The AMQP URL of the default virtual host (user guest, allowed on loopback)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    @property
    def env(self) -> dict[str, str]:
        """The environment of the node and of ``rabbitmqctl`` (same cookie, same epmd)."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        f = self.folder
        return {
            **base,
            "HOME": str(f),  # the Erlang cookie lives here
            "RABBITMQ_NODENAME": self.node,
            "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1",
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(self.dist_port),
            "ERL_EPMD_PORT": str(self.epmd_port),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
            "RABBITMQ_MNESIA_BASE": str(f / "mnesia"),
            "RABBITMQ_LOG_BASE": str(f / "log"),
            "RABBITMQ_CONFIG_FILE": str(f / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(f / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(f / "enabled_plugins"),
            "RABBITMQ_CONF_ENV_FILE": str(f / "rabbitmq-env.conf"),
            "RABBITMQ_PID_FILE": str(f / "rabbitmq.pid"),
        }

    def start(self) -> RabbitServer:
        """Start epmd (once) and the node; return once it accepts AMQP connections."""
        if self.epmd is None:
            self.epmd = subprocess.Popen(
                [*self._as_user, "epmd", "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=self.env,
                cwd=self.folder,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.STDOUT,
            )
            # listening before the node starts, or the node would start an epmd of its own
            wait_for(self._epmd_listens, 15, f"epmd on port {self.epmd_port}")
        (self.folder / "rabbitmq.pid").unlink(missing_ok=True)
        with (self.folder / "server.out").open("ab") as log:
            self.proc = subprocess.Popen(
                [*self._as_user, str(SERVER)],
                env=self.env,
                cwd=self.folder,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for(self._answers, START_TIMEOUT, f"rabbitmq-server {self.node}", interval=0.2)
        return self

    def _epmd_listens(self) -> bool:
        if self.epmd is not None and self.epmd.poll() is not None:
            raise AssertionError(f"epmd on port {self.epmd_port} exited ({self.epmd.returncode})")
        try:
            socket.create_connection(("127.0.0.1", self.epmd_port), timeout=1).close()
        except OSError:
            return False
        return True

    def _answers(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"rabbitmq-server exited:\n{self.log_tail()}")
        import amqp

        try:
            connection = amqp.Connection(f"127.0.0.1:{self.port}", connect_timeout=2)
            connection.connect()
        except (OSError, amqp.exceptions.AMQPError):
            return False
        connection.close()
        return True

    def log_tail(self, chars: int = 3000) -> str:
        """The end of the node's output and log (for a failure message)."""
        parts = [self.folder / "server.out", *sorted((self.folder / "log").glob("*.log"))]
        return "\n".join(p.read_text(errors="replace")[-chars:] for p in parts if p.exists())

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """``rabbitmqctl -n NODE ARGS`` as the broker's user."""
        return subprocess.run(
            [*self._as_user, str(CTL), "-n", self.node, *args],
            env=self.env,
            cwd=self.folder,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def beam_pid(self) -> int | None:
        """The Erlang VM's PID, from the node's PID file, while that process is this node's
        (its command line names this folder: a PID reused since is not ours to signal)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self.folder / "rabbitmq.pid").read_text().strip())
            if str(self.folder).encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        return None

    def stop(self) -> None:
        """Stop the node by name, then make sure by PID (the epmd keeps running)."""
        if self.proc is None:
            return
        beam = self.beam_pid()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.ctl("stop", timeout=60)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        if beam is not None and self.beam_pid() == beam:  # still running: stop it by PID
            with contextlib.suppress(ProcessLookupError):
                os.kill(beam, signal.SIGKILL)
        self.proc = None

    def crash(self) -> None:
        """SIGKILL the Erlang VM (a broker crash: no clean shutdown)."""
        assert self.proc is not None
        beam = self.beam_pid()
        assert beam is not None, "the node wrote no PID file"
        os.kill(beam, signal.SIGKILL)
        self.proc.wait(30)
        self.proc = None

    def restart(self) -> None:
        """A graceful stop, then start again on the same ports and database."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the node and its epmd, and remove the folder."""
        try:
            self.stop()
        finally:
            if self.epmd is not None:
                self.epmd.terminate()
                try:
                    self.epmd.wait(10)
                except subprocess.TimeoutExpired:
                    self.epmd.kill()
                    self.epmd.wait(10)
                self.epmd = None
            shutil.rmtree(self.folder, ignore_errors=True)

    def delete_queues(self, names: Iterable[str]) -> None:
        """Delete these queues (and the wake-ups in them): a clean broker for a test."""
        import amqp

        connection = amqp.Connection(f"127.0.0.1:{self.port}", connect_timeout=5)
        connection.connect()
        try:
            channel = connection.channel()
            for name in names:
                channel.queue_delete(name)
        finally:
            connection.close()

    def queue_depth(self, name: str) -> int:
        """Messages ready in queue ``name`` (0 when it does not exist)."""
        import amqp

        connection = amqp.Connection(f"127.0.0.1:{self.port}", connect_timeout=5)
        connection.connect()
        try:
            _, ready, _ = connection.channel().queue_declare(name, passive=True)
            return int(ready)
        except amqp.exceptions.NotFound:
            return 0
        finally:
            with contextlib.suppress(OSError, amqp.exceptions.AMQPError):
                connection.close()


def clean_broker(server: RabbitServer, components: Iterable[str]) -> None:
    """Delete motion's queues of ``components`` (and its control queue) on ``server``:
    a test starts with no wake-up left over from an earlier one."""
    from motion.floor.wakeup import CONTROL_QUEUE, queues_of

    server.delete_queues([CONTROL_QUEUE, *(q for c in components for q in queues_of(c))])


@pytest.fixture(scope="session")
def rabbit_server() -> Iterator[RabbitServer]:
    """One rabbitmq-server for the session; skipped (with the reason) when not installed."""
    reason = missing_reason()
    if reason:
        pytest.skip(reason)
    server = RabbitServer()
    try:
        server.start()
        yield server
    finally:
        server.close()
