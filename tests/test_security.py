"""Security: Redis AUTH, ACL users and TLS; JSON-only task messages; signed inbox payloads; no
secrets in logs, task messages or Flower.

Everything runs against real redis-servers (one with ``requirepass``, one with an
ACL user and the default user off, one on a TLS port with a throwaway CA), real
Celery worker subprocesses and a real Flower.
"""

from __future__ import annotations

import base64
import json
import pickle
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from motion import SerializationError
from motion.floor import celery_app, scripts, store, wakeup
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.embedded import free_port
from motion.floor.inbox import ALL_FLOWS, enqueue_call, parse_failures
from motion.floor.serde import seal
from motion.tools import metrics
from tests.conftest import reset_motion
from tests.support import (
    COMPONENTS,
    ROOT,
    RedisServer,
    Worker,
    bump_version,
    clear_motion_env,
    motion_env,
    wait_for,
)

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402

QUEUES = [f"motion.Ledger.{i}" for i in range(4)]  # the wake-up queues of Ledger


class SecureRedis(RedisServer):
    """A :class:`RedisServer` whose URL carries an ACL user and/or TLS parameters."""

    def __init__(
        self, folder: Path, *extra: str, user: str = "", password: str = "", tls: Path | None = None
    ) -> None:
        args = list(extra)
        if tls is not None:  # TLS only: the plain port is closed
            args += ["--port", "0", "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(tls / "server.crt")]
            args += ["--tls-key-file", str(tls / "server.key")]
            args += ["--tls-ca-cert-file", str(tls / "ca.crt")]
        super().__init__(folder, *args, password=password if not user else None)
        if tls is not None:
            self.extra += ["--tls-port", str(self.port)]
        self.user, self.secret, self.tls = user, password, tls

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.secret}@" if self.secret else ""
        if self.tls is None:
            return f"redis://{auth}127.0.0.1:{self.port}/0"
        query = f"ssl_cert_reqs=required&ssl_ca_certs={self.tls / 'ca.crt'}"
        return f"rediss://{auth}127.0.0.1:{self.port}/0?{query}"


class Flower:
    """``celery -A workers flower`` as a subprocess, with its API enabled on loopback."""

    def __init__(self, url: str, folder: Path, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.log = folder / f"flower-{self.port}.log"
        folder.mkdir(parents=True, exist_ok=True)
        args = [sys.executable, "-m", "celery", "-A", "workers", "flower"]
        args += ["--address=127.0.0.1", f"--port={self.port}"]
        full_env = motion_env(url, FLOWER_UNAUTHENTICATED_API="true", **(env or {}))
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(args, env=full_env, cwd=ROOT, stdout=out, stderr=out)

    def get(self, path: str) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as page:
            return str(page.read().decode())

    def try_json(self, path: str) -> Any:
        if self.proc.poll() is not None:
            raise AssertionError(f"flower exited:\n{self.log.read_text()[-3000:]}")
        try:
            return json.loads(self.get(path))
        except (OSError, ValueError):
            return None

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    days = ["-days", "2"]
    openssl("req", "-x509", *key, *days, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=ca")
    openssl("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    (folder / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    sign = ["-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-extfile", "san.cnf"]
    openssl("x509", "-req", "-in", "server.csr", *sign, *days, "-out", "server.crt")
    return folder


def use(url: str, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    """Point this process's motion at ``url`` (and any extra MOTION_* settings)."""
    monkeypatch.setenv("MOTION_REDIS_URL", url)
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    reset_motion()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No MOTION_* variables from outside; motion's caches reset before and after."""
    clear_motion_env(monkeypatch)
    reset_motion()
    yield
    reset_motion()


# -- AUTH, ACL, TLS: callers, workers and Flower ----------------------------------------


def _acl_server(folder: Path, certs: Path) -> SecureRedis:
    user = ["--user", "default", "off", "--user", "app", "on", ">app-pass", "~*", "&*", "+@all"]
    return SecureRedis(folder, *user, "-@dangerous", user="app", password="app-pass")


SERVERS = {
    "requirepass": lambda folder, certs: SecureRedis(folder, password="pass-word"),
    "acl-user": _acl_server,
    "tls": lambda folder, certs: SecureRedis(folder, tls=certs),
}


@pytest.mark.parametrize("kind", sorted(SERVERS))
def test_callers_workers_and_flower_work_on_a_secured_redis(
    kind: str, certs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    server = SERVERS[kind](tmp_path / "redis", certs)
    server.start()
    worker = flower = None
    try:
        if kind == "tls":  # a plain connection to the TLS port gets nowhere
            plain = redis.Redis(port=server.port, socket_connect_timeout=2, socket_timeout=2)
            with pytest.raises(redis.ConnectionError):
                plain.ping()
        else:  # and neither does one without credentials
            with pytest.raises(redis.AuthenticationError):
                redis.Redis(port=server.port).ping()
        use(server.url, monkeypatch)
        worker = Worker(server.url, ["ledger"], tmp_path / "logs", concurrency=1).start()
        flower = Flower(server.url, tmp_path / "logs")
        wait_for(
            lambda: (flower.try_json("/api/workers?refresh=1") or {}).get(worker.name),
            60,
            "Flower to see the worker",
            interval=0.5,
        )
        handle = Ledger(f"secure-{kind}")
        for i in range(3):
            handle.run("add", {"item": i})
        handle.flush_update(timeout=30)
        assert handle.read_state("seqs") == [1, 2, 3]
        tasks = wait_for(
            lambda: [
                t
                for t in (flower.try_json("/api/tasks") or {}).values()
                # a motion.ready task names the instance in its result
                if f"secure-{kind}" in str(t.get("args")) + str(t.get("result"))
            ],
            30,
            "Flower to list the instance's tasks",
            interval=0.5,
        )
        assert tasks[0]["name"] == "Ledger.updates", tasks  # labelled by component
        queues = wait_for(
            lambda: flower.try_json("/api/queues/length"), 30, "Flower's broker view", interval=0.5
        )
        assert {q["name"] for q in queues["active_queues"]} >= set(QUEUES), queues
        # the metrics exporter reads the backlog with the same credentials (the ACL
        # user cannot run INFO, so the memory gauges read 0 instead of failing)
        snap = metrics.collect(redis.Redis.from_url(server.url))
        assert snap.pending_instances == 0 and snap.components["Ledger"].flows["add"] == {
            "applied": 3,
            "calls": 3,
        }
    finally:
        if flower is not None:
            flower.stop()
        if worker is not None:
            worker.kill()
        server.stop()


# -- task messages: JSON only ----------------------------------------------------------


class _OpensAFile:
    """Unpickling this creates (opens for writing) the file it names."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.path), "w"))


def _live(tmp_path: Path) -> None:
    """Control: the trap payload really does create its file when unpickled."""
    control = tmp_path / "control-marker"
    pickle.loads(pickle.dumps(_OpensAFile(control))).close()
    assert control.exists()


def test_workers_refuse_pickled_task_messages(
    redis_url: str, start_worker: Any, tmp_path: Path
) -> None:
    _live(tmp_path)
    marker = tmp_path / "unpickled-by-celery"
    worker = start_worker(["ledger"], concurrency=1)
    app = celery_app.get_app()
    queue = celery_app.task_queue(QUEUES[0])
    app.send_task("motion.apply", args=[_OpensAFile(marker)], serializer="pickle", queue=queue)
    wait_for(
        lambda: (
            "ContentDisallowed" in worker.log.read_text()
            or "untrusted content" in worker.log.read_text()
        ),
        30,
        "the worker to refuse the pickled message",
    )
    assert not marker.exists(), "the worker unpickled a task message"
    handle = Ledger("after-pickle")
    handle.run("add", {"item": 1}, flush_update=True)  # and it still works
    assert handle.read_state("seqs") == [1]


# -- signed inbox payloads ---------------------------------------------------------------


def _signed_ledger(
    instance_id: str, key: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Any, K.InstanceKeys]:
    """A Ledger handle of this process, signing with ``key``, after one ``add`` (seq 1)."""
    _live(tmp_path)
    monkeypatch.setenv("MOTION_SIGNING_KEY", key)
    reset_motion()
    handle = Ledger(instance_id)
    handle.run("add", {"item": "first"})
    return handle, K.InstanceKeys.of(handle.instance_name)


def test_signed_payloads_refuse_forged_entries_without_unpickling(
    redis_url: str, start_worker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "inbox-signing-key"
    handle, keys = _signed_ledger("signed", key, tmp_path, monkeypatch)
    client = get_redis()
    stored = client.hget(keys.inbox, 1)
    assert stored.partition(b"\x00")[2].startswith(b"M1S"), "payloads should be signed"
    markers = [tmp_path / f"forged-{i}" for i in range(4)]
    bodies = [pickle.dumps(("add", {"item": _OpensAFile(m)}, None, 0.0)) for m in markers]
    forged = [
        b"M1U" + bodies[0],  # unsigned
        b"M1S" + b"\x00" * 32 + bodies[1],  # wrong signature
        seal(bodies[2], b"some-other-key"),  # signed with another key
        b"M1S" + b"\x01\x02" + bodies[3][:0],  # signature cut short
    ]
    for payload in forged:  # written as an enqueue would, seqs 2..5
        scripts.run(client, "enqueue", *enqueue_call(keys, b"add\x00" + payload, "add"))
    handle.run("add", {"item": "last"})  # seq 6
    start_worker(["ledger"], concurrency=1, env={"MOTION_SIGNING_KEY": key})
    handle.flush_update(timeout=30)  # its own updates applied; 2..5 are no handle's
    records = get_redis().zrangebyscore(keys.failed, 0, "+inf")
    failures = {f.seq: f for f in parse_failures(handle.instance_name, records, ALL_FLOWS)}
    assert sorted(failures) == [2, 3, 4, 5]
    assert all(f.error_type == "PayloadError" for f in failures.values()), failures
    assert "unsigned" in failures[2].message and "signature is wrong" in failures[3].message
    assert "truncated" in failures[5].message
    assert not any(m.exists() for m in markers), "a forged payload was unpickled"
    assert handle.read_state("items") == ["first", "last"]


def test_signed_state_refuses_values_planted_without_the_key(
    redis_url: str, start_worker: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """State values are unpickled too: with a signing key they are signed, and one
    written into Redis without the key is refused by workers and callers alike."""
    key = "state-signing-key"
    handle, keys = _signed_ledger("planted", key, tmp_path, monkeypatch)
    client = get_redis()
    assert client.hget(keys.state, "items").startswith(b"M1S"), "state should be signed"
    worker = start_worker(["ledger"], concurrency=1, env={"MOTION_SIGNING_KEY": key})
    handle.flush_update(timeout=30)
    marker = tmp_path / "planted-state"
    client.hset(keys.state, "items", pickle.dumps(_OpensAFile(marker)))  # no key: unsigned
    bump_version(client, keys.meta)  # so that every reader loads it
    handle.run("slow", {"item": "second"})  # update only: the caller reads no state
    wait_for(
        lambda: "MOTION_SIGNING_KEY" in worker.log.read_text(),
        30,
        "the worker to refuse the unsigned state",
    )
    assert client.hlen(keys.inbox) == 1, "the update stays pending, for a state that loads"
    store.STATE_CACHE.clear()
    with pytest.raises(SerializationError, match="MOTION_SIGNING_KEY"):
        handle.read_state("items")
    assert not marker.exists(), "a planted state value was unpickled"


# -- secrets stay out of logs, task messages and Flower -----------------------------------


def test_secrets_stay_out_of_logs_task_messages_and_flower(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, clean_env: None
) -> None:
    password = f"pw-{secrets.token_hex(8)}"
    signing_key = f"key-{secrets.token_hex(8)}"
    user_secret = f"sk-{secrets.token_hex(8)}"  # a caller's secret passed in props
    server = SecureRedis(tmp_path / "redis", password=password).start()
    env = {"MOTION_SIGNING_KEY": signing_key}
    worker = flower = None
    try:
        use(server.url, monkeypatch, **env)
        handle = Ledger("secretive")
        for i in range(3):
            handle.run("add", {"item": i, "api_key": user_secret})
        client = server.client()
        messages = [m for q in QUEUES for m in client.lrange(q, 0, -1)]
        assert messages, "no wake-up was queued"
        for raw in messages:
            envelope = json.loads(raw)
            body = envelope["body"]
            if envelope["properties"].get("body_encoding") == "base64":
                body = base64.b64decode(body)
            args = json.loads(body)[0]
            # ids only: the component and its ready list (the instance waits on the list)
            assert args == ["Ledger", f"{K.READY}{wakeup.queue_for('Ledger', 'secretive')}"], args
            for secret in (password, signing_key, user_secret):
                assert secret not in raw.decode(), "a secret is in a task message"
        worker = Worker(
            server.url, ["ledger"], tmp_path / "logs", concurrency=1, env=env,
            extra_args=["-l", "DEBUG"],
        )  # fmt: skip
        worker.start()
        handle.flush_update(timeout=30)
        flower = Flower(server.url, tmp_path / "logs", env=env)
        wait_for(
            lambda: (flower.try_json("/api/workers?refresh=1") or {}).get(worker.name),
            60,
            "Flower to see the worker",
            interval=0.5,
        )
        handle.run("add", {"item": 3, "api_key": user_secret}, flush_update=True)
        wait_for(lambda: flower.try_json("/api/tasks"), 30, "Flower's task list", interval=0.5)
        pages = [
            flower.get(path)
            for path in (
                "/api/workers?refresh=1",
                "/api/tasks",
                "/api/queues/length",
                "/",
                "/workers",
                "/tasks",
                "/broker",
                f"/worker/{worker.name}",
            )
        ]
        task_ids = list(json.loads(pages[1]))
        pages += [flower.get(f"/task/{task_id}") for task_id in task_ids[:3]]
        seen = {
            "worker log": worker.log.read_text(),
            "flower log": flower.log.read_text(),
            "flower pages": "\n".join(pages),
        }
        for where, text in seen.items():
            for secret in (password, signing_key, user_secret):
                assert secret not in text, f"a secret ({secret[:3]}...) appears in the {where}"
        assert "secretive" in seen["flower pages"], "Flower should show the instance's tasks"
    finally:
        if flower is not None:
            flower.stop()
        if worker is not None:
            worker.kill()
        server.stop()
