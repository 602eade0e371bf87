"""Fixtures: a real redis-server per session, a clean database and motion state per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.brokers import rabbit_server  # noqa: F401  (the session's RabbitMQ, if asked for)
from tests.cluster import cluster_url, counted, redis_cluster  # noqa: F401  (the session's Redis Cluster)
from tests.support import RedisServer, Worker, clear_motion_env


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--campaign-seed N`` (repeatable): run the fault campaign on these seeds only."""
    parser.addoption(
        "--campaign-seed",
        action="append",
        type=int,
        default=[],
        help="fault campaign: run these seeds (each prints its fault schedule)",
    )


def reset_motion() -> None:
    """Forget every cached setting, client and app, so the next use re-reads the env."""
    from motion.floor import motionrc
    from motion.tools.testing import forget_process_state

    motionrc.reset()  # a .motionrc.yml is read again too
    forget_process_state()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One redis-server for the session (tests flush it)."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An empty database on the session server; this process's motion points at it."""
    redis_server.client().flushall()
    clear_motion_env(monkeypatch, redis_server.url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    monkeypatch.setenv("MOTION_LEASE_SECONDS", "3")
    monkeypatch.setenv("MOTION_SWEEP_SECONDS", "1")
    reset_motion()
    yield redis_server.url
    reset_motion()


#: Debian's chromium-driver (installed by tests/run.sh with chromium): nothing is downloaded
CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless Chromium driven by selenium through Debian's chromedriver; quit at the end."""
    if not (CHROMEDRIVER.exists() and CHROMIUM.exists()):
        pytest.skip("no /usr/bin/chromium + /usr/bin/chromedriver: bash tests/run.sh as root "
                    "installs Debian's chromium and chromium-driver")  # fmt: skip
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--disable-gpu", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def workers(redis_url: str, tmp_path: Path) -> Iterator[list[Worker]]:
    """A list to put started :class:`Worker` subprocesses in; all are stopped afterwards."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.kill()


@pytest.fixture
def start_worker(workers: list[Worker], redis_url: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """``start_worker(modules, **options)`` starts a worker subprocess on the test's Redis."""

    def start(modules: list[str], **options: object) -> Worker:
        env = {"MOTION_LEASE_SECONDS": "3", "MOTION_SWEEP_SECONDS": "1"}
        env.update(options.pop("env", {}) or {})  # type: ignore[arg-type]
        worker = Worker(redis_url, modules, tmp_path / "logs", env=env, **options)  # type: ignore[arg-type]
        workers.append(worker)
        return worker.start()

    return start


@pytest.fixture
def inprocess(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The in-process worker (Celery worker threads in this process) on the test's
    redis-server, started on first need and stopped afterwards."""
    from motion.worker.inprocess import stop_inprocess_worker

    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "1")
    reset_motion()
    yield
    stop_inprocess_worker()
