"""HTTP security: tokens bound to component and instance, a token secret of its own
(shared by replicas through Redis), bounded expiry and waits, error bodies that hold
no exception text or Redis address. Real redis-server; a real worker where needed."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from motion import Application, ConfigurationError
from motion.floor import keys as K
from motion.floor.embedded import free_port
from tests.conftest import reset_motion
from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402
from http_components import SECRET_TEXT, Drafts  # noqa: E402

jwt = pytest.importorskip("jwt")
testclient = pytest.importorskip("fastapi.testclient")
KEY = "sk_test_key_0123456789abcdef0123456789abcdef"
SECRET = "jwt-secret-0123456789abcdef0123456789abcdef"


def client_of(app: Application) -> Any:
    return testclient.TestClient(app.get_app())


def token(client: Any, instance_id: str, **body: Any) -> dict[str, str]:
    reply = client.post(
        "/auth", json={"instance_id": instance_id, **body}, headers={"X-API-Key": KEY}
    )
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


@pytest.fixture
def notes(redis_url: str) -> Iterator[Any]:
    with client_of(Application([Notes], api_key=KEY, wait_timeout=20)) as client:
        yield client


def test_a_token_opens_only_its_component_and_instance(notes: Any) -> None:
    drafts_app = Application([Drafts], api_key=KEY)  # another app, same API key
    with client_of(drafts_app) as drafts:
        auth = token(notes, "u1")  # from the Notes app
        run = {"instance_id": "u1", "flow": "peek", "props": {}}
        assert drafts.post("/Drafts", json=run, headers=auth).status_code == 403
        read = {"instance_id": "u1", "key": "title"}
        assert drafts.get("/Drafts/read", params=read, headers=auth).status_code == 403
        write = {"instance_id": "u1", "state_update": {"title": "pwned"}}
        assert drafts.post("/Drafts/update", json=write, headers=auth).status_code == 403
        assert Drafts("u1").read_state("title") == "untitled"
        assert drafts.post("/Drafts", json=run, headers=token(drafts, "u1")).status_code == 200

    both = Application([Notes, Drafts], api_key=KEY)
    with client_of(both) as client:
        only_notes = token(client, "u1", component="Notes")
        assert client.post("/Drafts", json=run, headers=only_notes).status_code == 403
        notes_run = {"instance_id": "u1", "flow": "peek", "props": {}}
        assert client.post("/Notes", json=notes_run, headers=only_notes).status_code == 200
        every = token(client, "u1")  # Motion's request (no component): this app's components
        assert client.post("/Drafts", json=run, headers=every).status_code == 200
        unknown = client.post(
            "/auth", json={"instance_id": "u1", "component": "Nope"}, headers={"X-API-Key": KEY}
        )
        assert unknown.status_code == 422 and "no component 'Nope'" in unknown.json()["detail"]


def test_tokens_are_signed_with_their_own_secret_shared_through_redis(
    notes: Any, redis_server: Any
) -> None:
    raw = token(notes, "u1")["Authorization"].split()[1]
    with pytest.raises(jwt.InvalidSignatureError):  # the API key cannot check (or forge) it
        jwt.decode(raw, KEY, algorithms=["HS256"])
    stored = redis_server.client().get(K.HTTP_TOKEN_SECRET)
    assert stored is not None and len(stored) >= 32
    jwt.decode(raw, stored.decode(), algorithms=["HS256"], options={"verify_iss": False})
    # a replica (another Application, another process's worth of state) agrees
    reset_motion()
    with client_of(Application([Notes], api_key=KEY)) as replica:
        body = {"instance_id": "u1", "flow": "peek", "props": {}}
        reply = replica.post("/Notes", json=body, headers={"Authorization": f"Bearer {raw}"})
        assert reply.status_code == 200, reply.text
        token(replica, "u2")
    assert redis_server.client().get(K.HTTP_TOKEN_SECRET) == stored  # set once (NX)


def test_a_configured_token_secret_is_used_and_others_refused(
    redis_url: str, redis_server: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    given = Application([Notes], api_key=KEY, jwt_secret=SECRET)
    raw = given.make_token("u1")
    claims = jwt.decode(raw, SECRET, algorithms=["HS256"], options={"verify_iss": False})
    assert claims["sub"] == "u1" and claims["components"] == ["Notes"]
    monkeypatch.setenv("MOTION_JWT_SECRET", "env-secret-0123456789abcdef0123456789abcdef")
    from_env = Application([Notes], api_key=KEY)
    assert from_env.token_instance(from_env.make_token("u1")) == "u1"
    assert from_env.token_instance(raw) is None  # signed with another secret
    assert redis_server.client().get(K.HTTP_TOKEN_SECRET) is None  # nothing generated


def test_short_keys_and_secrets_are_refused(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(ConfigurationError, match="at least 32 random bytes"):
        Application([Notes], api_key="sk_guess")
    with pytest.raises(ValueError, match="jwt_secret is 5 bytes"):
        Application([Notes], api_key=KEY, jwt_secret="short")
    with pytest.raises(ConfigurationError, match="must differ from the API key"):
        Application([Notes], api_key=KEY, jwt_secret=KEY)
    monkeypatch.setenv("MOTION_JWT_SECRET", "tiny")
    with pytest.raises(ConfigurationError, match="MOTION_JWT_SECRET is 4 bytes"):
        Application([Notes], api_key=KEY)
    for wait in (None, 0, -1, float("inf")):
        with pytest.raises(ConfigurationError, match="wait_timeout"):
            Application([Notes], api_key=KEY, jwt_secret=SECRET, wait_timeout=wait)  # type: ignore[arg-type]


def test_token_expiry_is_bounded(notes: Any) -> None:
    for days in (-1, 0, 31, 1_000_000):
        reply = notes.post(
            "/auth",
            json={"instance_id": "u1", "token_expiration_days": days},
            headers={"X-API-Key": KEY},
        )
        assert reply.status_code == 422, (days, reply.text)
        assert "at most 30" in reply.json()["detail"]
    raw = token(notes, "u1")["Authorization"].split()[1]
    claims = jwt.decode(raw, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 86400  # one day by default
    token(notes, "u1", token_expiration_days=30)
    app = Application([Notes], api_key=KEY)
    with pytest.raises(ConfigurationError):
        app.make_token("u1", expiration_days=-1)
    # a token signed with the right secret but living longer than motion grants
    now = datetime.now(timezone.utc)
    secret = app.signer.secret()
    body = {"iss": "motion", "sub": "u1", "components": ["Notes"], "iat": now}
    forever = jwt.encode({**body, "exp": now + timedelta(days=3650)}, secret, "HS256")
    expired = jwt.encode(
        {**body, "iat": now - timedelta(days=2), "exp": now - timedelta(days=1)}, secret, "HS256"
    )
    run = {"instance_id": "u1", "flow": "peek", "props": {}}
    for raw in (forever, expired):
        reply = notes.post("/Notes", json=run, headers={"Authorization": f"Bearer {raw}"})
        assert reply.status_code == 401


def test_error_bodies_hold_no_exception_text(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    app = Application([Drafts], api_key=KEY)
    with client_of(app) as client, caplog.at_level(logging.ERROR, logger="motion.http"):
        run = {"instance_id": "u1", "flow": "boom", "props": {}}
        reply = client.post("/Drafts", json=run, headers=token(client, "u1"))
    assert reply.status_code == 500
    assert SECRET_TEXT not in reply.text and "hunter2" not in reply.text
    error_id = reply.headers["X-Error-Id"]
    assert f"error id {error_id}" in reply.json()["detail"]
    logged = [r for r in caplog.records if error_id in r.getMessage()]
    assert logged and logged[0].exc_info is not None
    assert SECRET_TEXT in str(logged[0].exc_info[1])  # the operator still sees it


def test_an_unreachable_redis_is_not_named_in_the_reply(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = Application([Notes], api_key=KEY)
    auth = {"Authorization": f"Bearer {app.make_token('u1')}"}  # while Redis answers
    closed = free_port()  # nothing listens here
    monkeypatch.setenv("MOTION_REDIS_URL", f"redis://127.0.0.1:{closed}/0")
    reset_motion()
    with client_of(app) as client:
        reply = client.post(
            "/Notes", json={"instance_id": "u1", "flow": "peek", "props": {}}, headers=auth
        )
    assert reply.status_code == 503, reply.text
    assert str(closed) not in reply.text and "127.0.0.1" not in reply.text
    assert "unreachable" in reply.json()["detail"]


def test_the_flow_key_body_field(notes: Any) -> None:
    auth = token(notes, "k1")
    add = {"instance_id": "k1", "flow_key": "add", "props": {"text": "a"}}  # Motion 0.1.132
    reply = notes.post("/Notes", json=add, headers=auth)
    assert reply.status_code == 200 and reply.json() == {"owner": "nobody", "count": 0}
    both = {**add, "dataflow_key": "peek"}
    assert notes.post("/Notes", json=both, headers=auth).status_code == 422
    older = {"instance_id": "k1", "dataflow_key": "peek", "props": {}}
    assert notes.post("/Notes", json=older, headers=auth).status_code == 200
    bad = {**older, "run_kwargs": {"serve_timeout": 3}}
    reply = notes.post("/Notes", json=bad, headers=auth)
    assert reply.status_code == 422 and "run_kwargs may not hold" in reply.json()["detail"]


def test_clients_cannot_pass_server_options_as_creation_kwargs(notes: Any, tmp_path: Path) -> None:
    """A handle option such as Motion's ``config_path`` configures the server process
    (it loads a YAML file into the environment): no client may set one."""
    auth = token(notes, "c1")
    planted = tmp_path / "planted.yml"
    planted.write_text("MOTION_REDIS_HOST: attacker.example\n")
    for options in ({"config_path": str(planted)}, {"logging_level": "DEBUG"}):
        body = {"instance_id": "c1", "flow": "peek", "props": {}, "creation_kwargs": options}
        reply = notes.post("/Notes", json=body, headers=auth)
        assert reply.status_code == 422, reply.text
        assert "creation_kwargs may not hold" in reply.json()["detail"]
    assert os.environ.get("MOTION_REDIS_HOST") is None
    ok = {"creation_kwargs": {"init_state_params": {"owner": "Ann"}}}
    body = {"instance_id": "c1", "flow": "add", "props": {"text": "a"}, **ok}
    assert notes.post("/Notes", json=body, headers=auth).json() == {"owner": "Ann", "count": 0}


def test_force_refresh_and_write_state_wait_at_most_wait_timeout(
    redis_url: str, start_worker: Any
) -> None:
    app = Application([Notes], api_key=KEY, wait_timeout=1)
    client = client_of(app)
    auth = token(client, "w1")
    add = {"instance_id": "w1", "flow": "add", "props": {"text": "a"}}
    assert client.post("/Notes", json=add, headers=auth).status_code == 200
    replies: dict[str, Any] = {}

    def call(kind: str) -> None:
        if kind == "refresh":  # no worker: the pending update is never applied
            body = {"instance_id": "w1", "flow": "peek", "props": {}, "force_refresh": True}
            replies[kind] = client.post("/Notes", json=body, headers=auth)
        else:
            body = {"instance_id": "w1", "state_update": {"owner": "Ann"}}
            replies[kind] = client.post("/Notes/update", json=body, headers=auth)

    threads = [threading.Thread(target=call, args=(k,), daemon=True) for k in ("refresh", "write")]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(20)
        assert not any(t.is_alive() for t in threads), "a request waited past wait_timeout"
        for kind in ("refresh", "write"):
            assert replies[kind].status_code == 504, replies[kind].text
            assert "not applied within 1s" in replies[kind].json()["detail"]
    finally:
        start_worker(["admin_components"], pool="threads", concurrency=1)
        for thread in threads:
            thread.join(30)
    body = {"instance_id": "w1", "flow": "peek", "props": {}, "force_refresh": True}
    fresh = client.post("/Notes", json=body, headers=auth)
    assert fresh.status_code == 200 and fresh.json() == ["a"]
