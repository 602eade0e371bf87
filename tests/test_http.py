"""The HTTP Application (FastAPI) on a real redis-server and a real worker."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from motion import Application, MissingDependencyError
from motion.floor import keys as K
from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402

testclient = pytest.importorskip("fastapi.testclient")
KEY = "sk_test_key_0123456789abcdef0123456789abcdef"


@pytest.fixture
def client(redis_url: str) -> Iterator[object]:
    app = Application([Notes], api_key=KEY, wait_timeout=20).get_app()
    with testclient.TestClient(app) as test_client:
        yield test_client


def token(client, instance_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    reply = client.post("/auth", json={"instance_id": instance_id}, headers={"X-API-Key": KEY})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def test_auth_rejects_wrong_or_missing_credentials(client) -> None:  # type: ignore[no-untyped-def]
    assert client.post("/auth", json={"instance_id": "u1"}).status_code == 401
    wrong = client.post("/auth", json={"instance_id": "u1"}, headers={"X-API-Key": "sk_guess"})
    assert wrong.status_code == 403
    body = {"instance_id": "u1", "flow": "add", "props": {"text": "hi"}}
    assert client.post("/Notes", json=body).status_code == 401
    bad = {"Authorization": "Bearer not-a-jwt"}
    assert client.post("/Notes", json=body, headers=bad).status_code == 401
    other_app = Application(
        [Notes], api_key=KEY, jwt_secret="another-secret-0123456789abcdef0123456789"
    )
    forged = other_app.make_token("u1")  # signed with a secret this app does not use
    forged_auth = {"Authorization": f"Bearer {forged}"}
    assert client.post("/Notes", json=body, headers=forged_auth).status_code == 401
    import jwt

    secret = Application([Notes], api_key=KEY).signer.secret()
    past = {"iss": "motion", "sub": "u1", "components": ["Notes"], "iat": 1, "exp": 2}
    expired = jwt.encode(past, secret, "HS256")
    assert (
        client.post("/Notes", json=body, headers={"Authorization": f"Bearer {expired}"}).status_code
        == 401
    )
    other = token(client, "u2")  # a valid token, for another instance
    assert client.post("/Notes", json=body, headers=other).status_code == 403
    assert (
        client.get(
            "/Notes/read", params={"instance_id": "u1", "key": "owner"}, headers=other
        ).status_code
        == 403
    )
    update = {"instance_id": "u1", "state_update": {"owner": "eve"}}
    assert client.post("/Notes/update", json=update, headers=other).status_code == 403
    enqueue = {"instance_id": "u1", "flow": "add", "props": {"text": "x"}}
    assert client.post("/Notes/enqueue", json=enqueue, headers=other).status_code == 403
    mine = token(client, "u1")
    assert (
        client.post("/Notes", json=body, headers={**mine, "X-API-Key": "sk_guess"}).status_code
        == 403
    )
    assert client.post("/Notes", json=body, headers={**mine, "X-API-Key": KEY}).status_code == 200
    assert Notes("u2").get_version() == 1  # nothing reached the other instance


def test_run_read_write_and_enqueue(client, start_worker, redis_server) -> None:  # type: ignore[no-untyped-def]
    auth = token(client, "web-1")
    body = {"instance_id": "web-1", "flow": "add", "props": {"text": "a"}}
    first = client.post(
        "/Notes",
        json={**body, "creation_kwargs": {"init_state_params": {"owner": "Ann"}}},
        headers=auth,
    )
    assert first.status_code == 200 and first.json() == {"owner": "Ann", "count": 0}
    # Motion's field names work too
    motion_style = {"instance_id": "web-1", "dataflow_key": "add", "props": {"text": "b"}}
    assert client.post("/Notes", json=motion_style, headers=auth).json()["count"] == 0
    client_redis = redis_server.client()
    meta = K.InstanceKeys.of("Notes__web-1").meta
    assert int(client_redis.hget(meta, "seq")) == 2 and int(client_redis.hget(meta, "applied")) == 0

    start_worker(["admin_components"], pool="threads", concurrency=2)
    flushed = client.post(
        "/Notes", json={**body, "props": {"text": "c"}, "flush_update": True}, headers=auth
    )
    assert flushed.status_code == 200
    assert Notes("web-1").read_state("notes") == ["a", "b", "c"]  # applied before the reply
    read = client.get("/Notes/read", params={"instance_id": "web-1", "key": "notes"}, headers=auth)
    assert read.json() == {"notes": ["a", "b", "c"]}

    wrote = client.post(
        "/Notes/update",
        json={"instance_id": "web-1", "state_update": {"owner": "Bob"}},
        headers=auth,
    )
    assert wrote.status_code == 200 and wrote.json()["version"] == Notes("web-1").get_version()
    assert client.get(
        "/Notes/read", params={"instance_id": "web-1", "key": "owner"}, headers=auth
    ).json() == {"owner": "Bob"}

    queued = client.post(
        "/Notes/enqueue",
        json={"instance_id": "web-1", "flow": "add", "props": {"text": "d"}},
        headers=auth,
    )
    assert queued.status_code == 200 and queued.json()["seq"] == 5
    Notes("web-1").flush_update(timeout=20)
    assert Notes("web-1").read_state("notes") == ["a", "b", "c", "d"]

    failing = client.post(
        "/Notes",
        json={**body, "props": {"text": "e", "fail": True}, "flush_update": True},
        headers=auth,
    )
    assert failing.status_code == 500 and "RuntimeError" in failing.json()["detail"]
    assert "refusing note" not in failing.text  # the op's message stays in the server log
    unknown = client.post("/Notes", json={**body, "flow": "nope"}, headers=auth)
    assert unknown.status_code == 404 and "has no flow 'nope'" in unknown.json()["detail"]
    no_updates = client.post("/Notes/enqueue", json={**body, "flow": "peek"}, headers=auth)
    assert no_updates.status_code == 404 and "no update op" in no_updates.json()["detail"]
    assert client.post("/Notes", json={"instance_id": "web-1"}, headers=auth).status_code == 422


def test_credentials_and_missing_extra(redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    app = Application([Notes])
    assert app.get_credentials()["api_key"].startswith("sk_")
    assert app.token_instance(app.make_token("x")) == "x"
    with testclient.TestClient(app) as asgi:  # the Application is an ASGI app itself
        assert asgi.post("/auth", json={"instance_id": "x"}).status_code == 401
    with pytest.raises(ValueError, match="distinct names"):
        Application([Notes, Notes])
    monkeypatch.setitem(sys.modules, "fastapi", None)  # as if the extra were not installed
    with pytest.raises(MissingDependencyError, match=r"pip install -e '\.\[http\]'"):
        Application([Notes])
    with pytest.raises(ImportError):
        Application([Notes])
