"""HTTP routes on an instance's updates (``/C/submit``, ``/C/failed``, ``/C/retry``,
``/C/drop``, ``/C/pause``, ``/C/resume``) on a real redis-server and a real worker
subprocess, with the app's auth.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion import Application, Ticket
from motion.errors import UpdateFailedError
from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from tickets import Tickets  # noqa: E402

testclient = pytest.importorskip("fastapi.testclient")
KEY = "sk_test_key_0123456789abcdef0123456789abcdef"


@pytest.fixture
def client(redis_url: str) -> Iterator[object]:
    app = Application([Tickets], api_key=KEY, wait_timeout=20).get_app()
    with testclient.TestClient(app) as test_client:
        yield test_client


def auth(client, instance_id: str) -> dict[str, str]:  # type: ignore[no-untyped-def]
    reply = client.post("/auth", json={"instance_id": instance_id}, headers={"X-API-Key": KEY})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


def test_submit_returns_a_ticket_another_process_can_wait_on(client, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(["tickets"])
    mine = auth(client, "web")
    submitted = {"instance_id": "web", "flow": "note", "props": {"item": "h"}}
    reply = client.post("/Tickets/submit", json=submitted, headers=mine)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    ticket = Ticket.parse(body["ticket"])
    assert (ticket.seq, ticket.flow, body["seq"]) == (body["seq"], "note", ticket.seq)
    ticket.wait(timeout=60)
    assert Tickets("web").read_state("items") == ["h"]
    timer = {"instance_id": "web", "flow": "note", "props": {"item": "t"}, "delay": -1}
    bad = client.post("/Tickets/submit", json=timer, headers=mine)
    assert bad.status_code == 422 and "delay" in bad.json()["detail"]
    unknown = {"instance_id": "web", "flow": "nope", "props": {}}
    assert client.post("/Tickets/submit", json=unknown, headers=mine).status_code == 404


def test_failed_retry_drop(client, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start_worker(["tickets"])
    mine = auth(client, "ops")
    handle = Tickets("ops")
    tickets = []
    poisons = []
    for item in ("a", "b"):
        poison = tmp_path / f"poison-{item}"
        poison.write_text("x")
        poisons.append(poison)
        tickets.append(handle.submit("note", {"item": item, "poison": str(poison)}))
        with pytest.raises(UpdateFailedError):
            tickets[-1].wait(timeout=60)
    listed = client.get("/Tickets/failed", params={"instance_id": "ops"}, headers=mine)
    assert listed.status_code == 200, listed.text
    body = listed.json()
    assert body["dropped"] == 0
    rows = [
        (x["seq"], x["flow"], x["op"], x["error_type"], x["props"]["item"]) for x in body["failed"]
    ]
    assert rows == [
        (t.seq, "note", "note", "ValueError", i) for t, i in zip(tickets, "ab", strict=True)
    ]
    assert "poisoned item" not in listed.text  # op output stays on the server side
    poisons[0].unlink()
    first, second = ({"instance_id": "ops", "seq": t.seq} for t in tickets)
    retried = client.post("/Tickets/retry", json=first, headers=mine)
    assert retried.status_code == 200, retried.text
    assert retried.json()["new_seq"] > tickets[0].seq
    tickets[0].wait(timeout=60)  # follows to the new seq
    assert handle.read_state("items") == ["a"]
    dropped = client.post("/Tickets/drop", json=second, headers=mine)
    assert dropped.status_code == 200
    assert dropped.json() == {"instance_id": "ops", "dropped": tickets[1].seq}
    again = client.post("/Tickets/drop", json=second, headers=mine)
    assert again.status_code == 404 and "not a dead letter" in again.json()["detail"]
    after = client.get("/Tickets/failed", params={"instance_id": "ops"}, headers=mine)
    assert after.json()["failed"] == []


def test_the_routes_need_a_token_for_that_instance(client) -> None:  # type: ignore[no-untyped-def]
    other = auth(client, "someone-else")
    for method, path, body in (
        ("post", "/Tickets/submit", {"instance_id": "v", "flow": "note", "props": {}}),
        ("post", "/Tickets/retry", {"instance_id": "v", "seq": 1}),
        ("post", "/Tickets/drop", {"instance_id": "v", "seq": 1}),
        ("post", "/Tickets/pause", {"instance_id": "v"}),
        ("post", "/Tickets/resume", {"instance_id": "v", "flow": "note"}),
    ):
        assert getattr(client, method)(path, json=body).status_code == 401
        assert getattr(client, method)(path, json=body, headers=other).status_code == 403
    assert client.get("/Tickets/failed", params={"instance_id": "v"}).status_code == 401
    assert (
        client.get("/Tickets/failed", params={"instance_id": "v"}, headers=other).status_code == 403
    )


def test_pause_and_resume(client, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(["tickets"])
    mine = auth(client, "held")
    handle = Tickets("held")
    body = {"instance_id": "held", "flow": "note"}
    paused = client.post("/Tickets/pause", json=body, headers=mine)
    assert paused.status_code == 200 and paused.json()["changed"] is True
    ticket = handle.submit("note", {"item": "waits"})
    handle.submit("strict", {"item": "goes"}).wait(timeout=60)
    assert handle.read_state("items") == ["goes"] and not ticket.done()
    resumed = client.post("/Tickets/resume", json=body, headers=mine)
    assert resumed.status_code == 200 and resumed.json()["changed"] is True
    ticket.wait(timeout=60)
    assert handle.read_state("items") == ["goes", "waits"]
    unknown = client.post(
        "/Tickets/pause", json={"instance_id": "held", "flow": "nope"}, headers=mine
    )
    assert unknown.status_code == 404
