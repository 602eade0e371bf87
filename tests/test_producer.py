"""The serverless producer: entries a worker can read, no component code, nothing lost."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from motion.errors import (
    ConnectionFailedError,
    InstanceNotFoundError,
    PayloadError,
    UnknownComponentError,
)
from motion.floor import celery_app, heartbeat, settings, wakeup
from motion.floor import keys as K
from motion.floor.embedded import free_port
from motion.floor.inbox import decode
from motion.tools import producer
from tests.components.ops_tally import Tally  # the workers import it as ops_tally
from tests.support import ROOT, ReplyDropper, motion_env, register_component, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(autouse=True)
def fresh_clients(request: pytest.FixtureRequest) -> Iterator[None]:
    producer.reset()
    if "redis_url" in request.fixturenames:  # as if a worker with Tally's code had run
        register_component(request.getfixturevalue("redis_url"), "Tally")
    yield
    producer.reset()


def meta(client: redis.Redis, instance_id: str) -> dict[bytes, bytes]:
    return client.hgetall(K.InstanceKeys.of(f"Tally__{instance_id}").meta)


def test_entry_decodes_like_a_handle_entry(redis_url: str) -> None:
    seq = producer.enqueue("Tally", "a", "hit", {"n": 2}, "served", initial_state={"count": 0})
    assert seq == 1
    client = redis.Redis.from_url(redis_url)
    entry = client.hget(K.InstanceKeys.of("Tally__a").inbox, 1)
    update = decode(Tally, entry, "Tally__a")
    assert (update.flow, update.props, update.serve_result) == ("hit", {"n": 2}, "served")
    assert client.sismember(K.COMPONENTS, "Tally")
    assert client.zscore(K.PENDING, "Tally__a") is not None


def test_signing_key_is_honoured(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_SIGNING_KEY", "k1")
    settings.reset()
    producer.enqueue("Tally", "s", "hit", {}, initial_state={})
    entry = redis.Redis.from_url(redis_url).hget(K.InstanceKeys.of("Tally__s").inbox, 1)
    assert decode(Tally, entry, "Tally__s").flow == "hit"  # checked with k1
    monkeypatch.setenv("MOTION_SIGNING_KEY", "other")
    settings.reset()
    with pytest.raises(PayloadError, match="signature"):
        decode(Tally, entry, "Tally__s")


def test_missing_instance_stores_nothing(redis_url: str) -> None:
    with pytest.raises(InstanceNotFoundError, match="initial_state"):
        producer.enqueue("Tally", "nobody", "hit", {"n": 1})
    assert redis.Redis.from_url(redis_url).keys() == [b"motion:registered:{Tally}"]


def test_a_component_no_worker_ever_registered_is_refused(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    with pytest.raises(UnknownComponentError, match="no worker has ever registered component"):
        producer.enqueue("Taly", "a", "hit", {}, initial_state={"count": 0})  # a typo
    assert client.keys("motion:*Taly*") == []  # nothing stored, no instance pending forever
    heartbeat.beat(client, ["Ghost"])  # a worker with Ghost's code announces itself once ...
    heartbeat.beat(client, ["Ghost"], goodbye=True)  # ... and stops: Ghost stays known
    assert producer.enqueue("Ghost", "a", "hit", {}, initial_state={"count": 0}) == 1


def test_initial_state_creates_once(redis_url: str) -> None:
    producer.enqueue("Tally", "b", "hit", {}, initial_state={"count": 5})
    producer.enqueue("Tally", "b", "hit", {}, initial_state={"count": 99})
    client = redis.Redis.from_url(redis_url)
    assert meta(client, "b")[b"seq"] == b"2"
    assert Tally("b").read_state("count") == 5


def test_a_dedup_key_enqueues_an_event_once(redis_url: str) -> None:
    """A function invoked twice for one event (at-least-once triggers) passes the
    event's id: the second enqueue stores nothing and returns the first seq."""
    first = producer.enqueue("Tally", "d", "hit", {}, initial_state={}, dedup_key="evt-1")
    again = producer.enqueue("Tally", "d", "hit", {}, dedup_key="evt-1")
    other = producer.enqueue("Tally", "d", "hit", {}, dedup_key="evt-2")
    assert (first, again, other) == (1, 1, 2)
    assert meta(redis.Redis.from_url(redis_url), "d")[b"seq"] == b"2"
    with pytest.raises(TypeError, match="dedup_key"):
        producer.enqueue("Tally", "d", "hit", {}, dedup_key="")


def test_a_lost_reply_is_retried_without_enqueueing_twice(redis_url: str) -> None:
    server = redis.Redis.from_url(redis_url)
    port = server.connection_pool.connection_kwargs["port"]
    proxy = ReplyDropper(port)
    try:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        producer.enqueue("Tally", "e2", "hit", {}, initial_state={}, url=url)
        proxy.drop_next.set()  # the enqueue ran; its reply is lost with the connection
        assert producer.enqueue("Tally", "e2", "hit", {}, url=url) == 2
        assert proxy.dropped == 1
        assert meta(server, "e2")[b"seq"] == b"2"
    finally:
        proxy.close()


def test_unreachable_redis_is_a_clear_error(redis_url: str) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(ConnectionFailedError, match="nothing was enqueued"):
        producer.enqueue("Tally", "c", "hit", {}, initial_state={}, url=dead)


def test_warm_calls_reuse_one_connection(redis_url: str) -> None:
    producer.enqueue("Tally", "d", "hit", {}, initial_state={})
    client = producer.get_client()
    assert producer.get_client() is client
    created = len(client.connection_pool._available_connections) + len(
        client.connection_pool._in_use_connections
    )
    for _ in range(20):
        producer.enqueue("Tally", "d", "hit", {})
    pool = client.connection_pool
    assert len(pool._available_connections) + len(pool._in_use_connections) == created == 1


def test_a_connection_closed_while_idle_is_replaced(redis_url: str) -> None:
    producer.enqueue("Tally", "f", "hit", {}, initial_state={})
    server = redis.Redis.from_url(redis_url)
    killed = server.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1  # the producer's pooled connection is gone (a thawed function's fate)
    producer._last_used.clear()  # as after IDLE_CHECK_SECONDS without an enqueue
    assert producer.enqueue("Tally", "f", "hit", {}) == 2


def _without_ids(message: bytes) -> dict[str, Any]:
    out = json.loads(wakeup.fill_seq(message, 7))
    for key in ("id", "root_id", "origin"):
        out["headers"][key] = None
    for key in ("correlation_id", "delivery_tag"):
        out["properties"][key] = None
    return out  # type: ignore[no-any-return]


def test_wakeup_message_is_the_one_celery_sends(redis_url: str) -> None:
    queue, ours = wakeup.message("Tally", "e", "hit")
    again_queue, again = wakeup.message("Tally", "e", "hit")  # from the cached template
    assert queue == again_queue == wakeup.queue_for("Tally", "e")
    assert _without_ids(ours) == _without_ids(again)
    first, second = json.loads(wakeup.fill_seq(ours, 1)), json.loads(wakeup.fill_seq(again, 1))
    assert first["headers"]["id"] != second["headers"]["id"]  # every message its own id
    for message in (first, second):
        task_id = message["headers"]["id"]
        assert message["headers"]["root_id"] == message["properties"]["correlation_id"] == task_id
        assert message["properties"]["delivery_tag"] == task_id
    client = redis.Redis.from_url(redis_url)
    celery_app.send_wakeup("Tally", "e", "hit", 7)
    sent = json.loads(client.rpop(queue))
    mine = _without_ids(ours)
    assert set(mine) == set(sent)
    assert set(mine["headers"]) == set(sent["headers"])
    for name in ("task", "shadow", "argsrepr", "ignore_result"):
        assert mine["headers"][name] == sent["headers"][name]
    body = (
        base64.b64decode(sent["body"])
        if sent["properties"]["body_encoding"] == "base64"
        else sent["body"]
    )
    assert json.loads(mine["body"]) == json.loads(body)


def run_handler(url: str, event: dict[str, object], **env: str) -> list[dict[str, object]]:
    """Run the example handler in a fresh process; check it loaded no component or Celery."""
    code = (
        "import json, sys\n"
        "sys.path.insert(0, 'examples')\n"
        "from serverless_handler import handler\n"
        "out = handler(json.loads(sys.argv[1]))\n"
        "loaded = [m for m in sys.modules if m.startswith(('celery', 'kombu', 'ops_tally'))]\n"
        "print(json.dumps({'body': json.loads(out['body']), 'loaded': loaded}))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, json.dumps(event)],
        cwd=ROOT,
        env=motion_env(url, PYTHONPATH=str(ROOT), **env),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    if env.get("MOTION_PRODUCER_WAKEUP") != "celery":
        assert out["loaded"] == [], "the producer imported component code or Celery"
    return out["body"]  # type: ignore[no-any-return]


def update(instance_id: str, **extra: object) -> dict[str, object]:
    return {"component": "Tally", "instance_id": instance_id, "flow": "hit", **extra}


def test_handler_updates_reach_a_real_worker(redis_url: str, start_worker, tmp_path: Path) -> None:
    client = redis.Redis.from_url(redis_url)
    start_worker(["ops_tally"], pool="threads", concurrency=2)
    batch = {"Records": [{"body": json.dumps(update("h", props={"n": i}))} for i in range(5)]}
    out = run_handler(redis_url, {"Records": [{"body": json.dumps(update("nobody"))}]})
    assert "does not exist" in str(out[0]["error"])
    Tally("h").read_state("count")  # the web app created the instance (ran init_state)
    out = run_handler(redis_url, batch)
    assert [r["seq"] for r in out] == [1, 2, 3, 4, 5]
    wait_for(lambda: meta(client, "h").get(b"applied") == b"5", 20, "raw wake-ups applied")
    assert Tally("h").read_state("seqs") == [1, 2, 3, 4, 5]
    assert Tally("h").read_state("count") == 10

    # through Celery's own producer (the setting for a broker that is not Redis)
    out = run_handler(redis_url, update("h", props={"n": 100}), MOTION_PRODUCER_WAKEUP="celery")
    assert out[0]["seq"] == 6
    wait_for(lambda: meta(client, "h").get(b"applied") == b"6", 20, "celery wake-up applied")

    # a separate Redis broker (here the same server under another URL): LPUSH after
    out = run_handler(redis_url, update("h"), MOTION_BROKER_URL=redis_url.replace("/0", "/0?"))
    assert out[0]["seq"] == 7
    wait_for(lambda: meta(client, "h").get(b"applied") == b"7", 20, "broker wake-up applied")

    # the wake-up cannot be sent (broker down): the update is stored, the sweeper recovers
    dead_broker = f"redis://127.0.0.1:{free_port()}/0"
    out = run_handler(
        redis_url,
        update("lost", initial_state={"count": 0, "seqs": []}),
        MOTION_BROKER_URL=dead_broker,
    )
    assert out[0]["seq"] == 1
    assert meta(client, "lost")[b"seq"] == b"1"
    wait_for(lambda: meta(client, "lost").get(b"applied") == b"1", 20, "sweeper to recover it")
    assert Tally("lost").read_state("count") == 1
