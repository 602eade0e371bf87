"""Motion's configuration runs a Motion program unchanged: no worker process, no new flag.

Each scenario is a Motion program run as its own interpreter (as a user runs it),
configured only the way Motion documents: ``MOTION_REDIS_HOST``/``PORT`` variables
or a ``.motionrc.yml`` in the working directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion import inspect_state
from motion.errors import ConfigurationError
from motion.floor import motionrc
from motion.floor.redis_params import RedisParams
from tests.support import ROOT, RedisServer

pytestmark = pytest.mark.integration

PROGRAM = textwrap.dedent(
    """
    import pathlib, sys, time
    from motion import Component

    Counter = Component("Counter")

    @Counter.init_state
    def setup():
        return {"count": 0}

    @Counter.serve("add")
    def read(state, props):
        return state["count"]

    @Counter.update("add")
    def add(state, props):
        if props.get("started"):  # tell the test the op runs
            pathlib.Path(props["started"]).write_text("x")
        time.sleep(float(props.get("slow", 0)))
        return {"count": state["count"] + props["n"]}
    """
)


def program_env(**extra: str) -> dict[str, str]:
    """The environment of a user's shell: nothing of motion's set unless given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MOTION_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", **extra)
    return env


def run_program(
    folder: Path, body: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    script = folder / "program.py"
    script.write_text(PROGRAM + textwrap.dedent(body))
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def host_port(server: RedisServer) -> tuple[str, str]:
    host_port = server.url.split("//")[1].split("/")[0]
    host, port = host_port.rsplit(":", 1)
    return host, port


@pytest.fixture
def server(redis_server: RedisServer, redis_url: str) -> RedisServer:
    """The session's redis-server, flushed; this process's motion points at it too."""
    return redis_server


def count_of(server: RedisServer, instance: str) -> int:
    """The committed count, read as an operator would (``inspect_state``)."""
    return int(inspect_state(f"Counter__{instance}")["count"])


def test_motionrc_in_the_working_directory_configures_redis_and_updates_apply(
    server: RedisServer, tmp_path: Path
) -> None:
    host, port = host_port(server)
    (tmp_path / ".motionrc.yml").write_text(
        f"MOTION_REDIS_HOST: {host}\nMOTION_REDIS_PORT: {port}\nMOTION_REDIS_DB: 0\n"
        "MOTION_REDIS_PASSWORD: null\nMOTION_REDIS_SSL: false\nMOTION_ENV: prod\n"
    )
    out = run_program(
        tmp_path,
        """
        c = Counter("rc")
        c.run("add", props={"n": 2})
        c.run("add", props={"n": 3}, flush_update=True)
        print("count", c.read_state("count"))
        """,
        program_env(),
    )
    assert out.returncode == 0, out.stderr
    assert "count 5" in out.stdout
    assert "runs its own local server" not in out.stderr  # the file was honoured
    assert count_of(server, "rc") == 5


def test_motion_variables_need_no_worker_process(server: RedisServer, tmp_path: Path) -> None:
    host, port = host_port(server)
    out = run_program(
        tmp_path,
        """
        c = Counter("env")
        for n in range(1, 5):
            c.run("add", props={"n": n})
        c.flush_update()
        print("count", c.read_state("count"))
        """,
        program_env(MOTION_REDIS_HOST=host, MOTION_REDIS_PORT=port),
    )
    assert out.returncode == 0, out.stderr
    assert "count 10" in out.stdout


def test_with_a_url_and_no_worker_a_wait_fails_naming_the_fix(
    server: RedisServer, tmp_path: Path
) -> None:
    out = run_program(
        tmp_path,
        """
        import time
        from motion import NoWorkerError, FlushTimeoutError
        c = Counter("fleet")
        c.run("add", props={"n": 7})
        start = time.monotonic()
        try:
            c.flush_update()
        except NoWorkerError as exc:
            assert isinstance(exc, FlushTimeoutError)
            print("raised after", round(time.monotonic() - start, 1))
            print(exc)
        """,
        program_env(MOTION_REDIS_URL=server.url, MOTION_WORKER_GRACE_SECONDS="1"),
    )
    assert out.returncode == 0, out.stderr
    assert "raised after" in out.stdout
    assert "motion worker -I" in out.stdout and "MOTION_INPROCESS_WORKER=1" in out.stdout
    # the update stays queued: a worker started later applies it
    meta = server.client().hgetall("motion:{Counter__fleet}:meta")
    assert int(meta[b"seq"]) == 1 and int(meta.get(b"applied", 0)) == 0


def test_a_worker_that_was_seen_keeps_a_wait_patient(server: RedisServer, tmp_path: Path) -> None:
    """An in-process worker announces itself, so a long update is waited for, not refused."""
    host, port = host_port(server)
    out = run_program(
        tmp_path,
        """
        c = Counter("patient")
        c.run("add", props={"n": 1, "slow": 3}, flush_update=True)
        print("count", c.read_state("count"))
        """,
        program_env(
            MOTION_REDIS_HOST=host,
            MOTION_REDIS_PORT=port,
            MOTION_WORKER_GRACE_SECONDS="1",
            MOTION_HEARTBEAT_SECONDS="0.2",
        ),
    )
    assert out.returncode == 0, out.stderr
    assert "count 1" in out.stdout


def test_flush_on_exit_applies_every_update_before_the_process_ends(
    server: RedisServer, tmp_path: Path
) -> None:
    host, port = host_port(server)
    out = run_program(
        tmp_path,
        """
        c = Counter("exit", flush_on_exit=True)
        for n in range(3):
            c.run("add", props={"n": 1, "slow": 0.3})
        print("enqueued")
        """,
        program_env(MOTION_REDIS_HOST=host, MOTION_REDIS_PORT=port),
    )
    assert out.returncode == 0, out.stderr
    assert count_of(server, "exit") == 3


def test_at_exit_the_update_being_applied_finishes_and_the_rest_stay_queued(
    server: RedisServer, tmp_path: Path
) -> None:
    host, port = host_port(server)
    marker = tmp_path / "started"
    out = run_program(
        tmp_path,
        f"""
        started = pathlib.Path({str(marker)!r})
        c = Counter("durable")
        c.run("add", props={{"n": 1, "slow": 1.5, "started": str(started)}})
        c.run("add", props={{"n": 10}})
        c.run("add", props={{"n": 100}})
        deadline = time.monotonic() + 30  # exit once the first op runs
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        """,
        program_env(MOTION_REDIS_HOST=host, MOTION_REDIS_PORT=port),
    )
    assert out.returncode == 0, out.stderr
    assert marker.exists()
    client = server.client()
    meta = client.hgetall("motion:{Counter__durable}:meta")
    assert int(meta[b"seq"]) == 3
    # the update being applied at exit was finished; the rest stay queued, for the
    # next worker of any kind
    assert int(meta.get(b"applied", 0)) == 1
    assert client.hlen("motion:{Counter__durable}:inbox") == 2
    out = run_program(
        tmp_path,
        """
        c = Counter("durable")
        c.flush_update()
        print("count", c.read_state("count"))
        """,
        program_env(MOTION_REDIS_HOST=host, MOTION_REDIS_PORT=port),
    )
    assert out.returncode == 0, out.stderr
    assert "count 111" in out.stdout


def test_no_configuration_starts_the_embedded_server_and_says_so_once(tmp_path: Path) -> None:
    out = run_program(
        tmp_path,
        """
        c = Counter("alone")
        c.run("add", props={"n": 4}, flush_update=True)
        Counter("alone2").run("add", props={"n": 1}, flush_update=True)
        print("count", c.read_state("count"))
        """,
        program_env(),
    )
    assert out.returncode == 0, out.stderr
    assert "count 4" in out.stdout
    assert out.stderr.count("runs its own local server") == 1
    assert "localhost:6379" in out.stderr and "MOTION_REDIS_URL" in out.stderr
    assert str(tmp_path / ".motion") in out.stderr


def test_the_readme_first_example_is_a_motion_program_that_runs_unchanged(
    server: RedisServer, tmp_path: Path
) -> None:
    readme = (ROOT / "README.md").read_text()
    code = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert code.startswith("# assistant.py")
    (tmp_path / "assistant.py").write_text(code)
    host, port = host_port(server)
    out = subprocess.run(
        [sys.executable, "assistant.py"],
        cwd=tmp_path,
        env=program_env(MOTION_REDIS_HOST=host, MOTION_REDIS_PORT=port),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Shopper: No history yet." in out.stdout
    assert "Shopper: Recently asked about: Trail shoes under $120?" in out.stdout


# -- the file itself (no Redis) ---------------------------------------------------------


@pytest.fixture
def clean_env() -> Iterator[None]:
    """No MOTION_* variables; whatever a loaded file sets is undone afterwards."""
    saved = dict(os.environ)
    for name in list(os.environ):
        if name.startswith("MOTION_"):
            del os.environ[name]
    motionrc.reset()
    yield
    os.environ.clear()
    os.environ.update(saved)
    motionrc.reset()


def test_import_config_loads_once_and_overwrites_the_environment(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MOTION_REDIS_HOST", "from-env")
    first = tmp_path / "a.yml"
    first.write_text("MOTION_REDIS_HOST: from-file\nMOTION_REDIS_PORT: 6380\n")
    second = tmp_path / "b.yml"
    second.write_text("MOTION_REDIS_HOST: second\n")
    assert motionrc.import_config(first) is True
    assert os.environ["MOTION_REDIS_HOST"] == "from-file"
    assert motionrc.import_config(second) is False  # once per process, as in Motion
    assert os.environ["MOTION_REDIS_HOST"] == "from-file"
    params = RedisParams()
    assert (params.host, params.port) == ("from-file", 6380)


def test_a_null_password_in_the_file_means_none(clean_env: None, tmp_path: Path) -> None:
    path = tmp_path / ".motionrc.yml"
    path.write_text("MOTION_REDIS_HOST: h\nMOTION_REDIS_PASSWORD: null\nMOTION_REDIS_SSL: False\n")
    motionrc.import_config(path)
    params = RedisParams()
    assert params.password is None and params.ssl is False
    assert params.dict() == params.model_dump()
    assert params.dict()["host"] == "h"
    assert params.url() == "redis://h:6379/0"


def test_a_file_that_is_not_a_mapping_is_a_clear_error(clean_env: None, tmp_path: Path) -> None:
    path = tmp_path / ".motionrc.yml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(ConfigurationError, match="mapping of variable names"):
        motionrc.import_config(path)
    path.write_text("MOTION_REDIS_HOST: [unclosed\n")
    with pytest.raises(ConfigurationError, match="cannot read it as YAML"):
        motionrc.import_config(path)


def test_a_missing_file_is_no_error(clean_env: None, tmp_path: Path) -> None:
    assert motionrc.import_config(tmp_path / "absent.yml") is False


def test_every_wait_with_no_timeout_fails_when_no_worker_is_seen(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from motion import Component, NoWorkerError
    from motion.floor import settings

    monkeypatch.setenv("MOTION_WORKER_GRACE_SECONDS", "0.5")
    settings.reset()
    Lonely = Component("Lonely")

    @Lonely.init_state
    def setup() -> dict[str, int]:
        return {"n": 0}

    @Lonely.update("add")
    def add(state: dict[str, int], props: dict[str, int]) -> dict[str, int]:
        return {"n": state["n"] + 1}

    handle = Lonely("a")
    with pytest.raises(NoWorkerError, match="no worker able to apply Lonely"):
        handle.run("add", props={}, flush_update=True)
    with pytest.raises(NoWorkerError):
        handle.run("add", props={}, force_refresh=True)
    with pytest.raises(NoWorkerError):
        handle.write_state({"n": 5})
    with pytest.raises(NoWorkerError):
        handle.flush_update()
    with pytest.raises(NoWorkerError):
        asyncio.run(handle.aflush_update())


@pytest.mark.parametrize("variable", ["MOTION_REDIS_PORT", "MOTION_REDIS_DB"])
def test_a_port_or_db_that_is_not_a_number_names_the_variable(
    clean_env: None, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    monkeypatch.setenv(variable, "abc")
    with pytest.raises(ConfigurationError, match=f"{variable}='abc'"):
        RedisParams()
