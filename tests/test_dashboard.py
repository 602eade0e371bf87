"""The dashboard (FastAPI TestClient) on a real redis-server and a real worker subprocess:
escaping, paging and prefix search, the loopback rule, sign-in, CSRF, read-only mode,
and edits committed through an ordered write_state; `motion dashboard` as a process."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from motion.floor.embedded import free_port
from tests.support import COMPONENTS, ROOT, motion_env, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402
from http_components import Drafts  # noqa: E402

testclient = pytest.importorskip("fastapi.testclient")
KEY = "dashboard-key-0123456789abcdef0123456789abcdef"
SCRIPT = "<script>alert('owned')</script>"


def board(**options: Any) -> Any:
    from motion.tools.board import create_dashboard

    return create_dashboard(**options)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "the page has no CSRF field"
    return found.group(1)


def test_motion_import_path_serves_its_root(redis_url: str) -> None:
    from motion.dashboard import dashboard_app  # Motion's test, unchanged

    Notes("seen")  # an instance, so the component is listed
    Notes("seen").read_state("owner")
    response = testclient.TestClient(dashboard_app).get("/")
    assert response.status_code == 200 and "Notes" in response.text


def test_state_values_and_names_are_escaped(redis_url: str) -> None:
    Notes("x1", init_state_params={"owner": SCRIPT}).read_state("owner")
    Drafts("<b>id</b>").read_state("title")
    client = testclient.TestClient(board(key=""))
    page = client.get("/instance", params={"component": "Notes", "id": "x1"})
    assert page.status_code == 200
    assert SCRIPT not in page.text and "<script" not in page.text
    assert "&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;" in page.text
    assert "script-src" not in page.headers["content-security-policy"]  # no script at all
    assert "default-src 'none'" in page.headers["content-security-policy"]
    listing = client.get("/component", params={"name": "Drafts"})
    assert "<b>id</b>" not in listing.text and "&lt;b&gt;id&lt;/b&gt;" in listing.text
    missing = client.get("/instance", params={"component": "Notes", "id": SCRIPT})
    assert missing.status_code == 404 and "<script" not in missing.text
    assert "<script" not in client.get("/", params={"x": SCRIPT}).text


def test_instances_are_paged_and_searchable_by_prefix(redis_url: str) -> None:
    ids = {f"user-{i}" for i in range(120)} | {"admin-1"}
    for instance_id in ids:
        Drafts(instance_id).read_state("title")
    client = testclient.TestClient(board(key=""))
    seen: list[str] = []
    url: str | None = "/component?name=Drafts&size=25"
    pages = 0
    while url:
        page = client.get(url)
        assert page.status_code == 200
        seen += re.findall(r"id=([\w-]+)\">", page.text)
        nxt = re.search(r'href="(/component\?[^"]+)">Next page', page.text)
        url = nxt.group(1).replace("&amp;", "&") if nxt else None
        pages += 1
    assert set(seen) == ids and pages > 2
    found = client.get("/component", params={"name": "Drafts", "prefix": "user-1", "size": 500})
    listed = set(re.findall(r"id=([\w-]+)\">", found.text))
    assert listed == {i for i in ids if i.startswith("user-1")}


def test_without_a_key_only_loopback_is_served(redis_url: str) -> None:
    app = board(key="")
    assert testclient.TestClient(app, base_url="http://127.0.0.1:8080").get("/").status_code == 200
    assert testclient.TestClient(app, base_url="http://[::1]:8080").get("/").status_code == 200
    remote = testclient.TestClient(app, base_url="http://10.1.2.3:8080").get("/")
    assert remote.status_code == 403 and "MOTION_DASHBOARD_KEY" in remote.text
    rebinding = testclient.TestClient(app, base_url="http://127.0.0.1:8080")
    assert rebinding.get("/", headers={"host": "evil.example"}).status_code == 403
    other_peer = testclient.TestClient(app, client=("203.0.113.9", 4000))
    assert other_peer.get("/").status_code == 403


def test_sign_in_session_and_csrf(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from motion import ConfigurationError

    with pytest.raises(ConfigurationError, match="at least 32"):
        board(key="short")
    Notes("n1").read_state("owner")
    monkeypatch.setenv("MOTION_DASHBOARD_KEY", KEY)
    client = testclient.TestClient(board(), base_url="http://10.1.2.3")  # remote, with a key
    first = client.get("/", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/login"
    assert client.post("/login", data={"key": KEY[:-1] + "x"}).status_code == 403
    forger = testclient.TestClient(board(), base_url="http://10.1.2.3")
    forger.cookies.set("motion_dashboard", "abc.op.9999999999.deadbeef")
    assert forger.get("/", follow_redirects=False).status_code == 303
    signed_in = client.post("/login", data={"key": KEY}, follow_redirects=False)
    assert signed_in.status_code == 303
    cookie = signed_in.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    page = client.get("/instance", params={"component": "Notes", "id": "n1"})
    assert page.status_code == 200 and "Sign out" in page.text
    token = csrf_of(page.text)
    edit = {"component": "Notes", "id": "n1", "key": "owner", "value": "mallory"}
    for bad in ({}, {"csrf": "0" * 64}, {"csrf": token[:-1]}):
        refused = client.post("/instance/edit", data={**edit, **bad})
        assert refused.status_code == 403 and "stale" in refused.text
    assert Notes("n1").get_version() == 1  # nothing was enqueued
    other = testclient.TestClient(board(), base_url="http://10.1.2.3")  # another browser
    other.post("/login", data={"key": KEY})
    assert other.post("/instance/edit", data={**edit, "csrf": token}).status_code == 403
    monkeypatch.setenv("MOTION_DASHBOARD_KEY", KEY + "-rotated")  # a new key ends sessions
    assert client.get("/", follow_redirects=False).status_code == 303


def test_edits_commit_through_an_ordered_write_state(
    redis_url: str, start_worker: Any, tmp_path: Path
) -> None:
    drafts = Drafts("d1")
    drafts.read_state("title")
    client = testclient.TestClient(board(key=""))
    page = client.get("/instance", params={"component": "Drafts", "id": "d1"}).text
    token = csrf_of(page)
    for key in ("title", "words", "ratio", "done", "tags", "meta"):
        assert f'name="key" value="{key}"' in page, key

    def save(key: str, value: str, component: str = "Drafts", instance: str = "d1") -> str:
        body = {"csrf": token, "component": component, "id": instance, "key": key}
        reply = client.post("/instance/edit", data={**body, "value": value})
        assert reply.status_code == 200, reply.text
        return reply.text

    assert "not saved" in save("words", "twelve")  # refused before anything is enqueued
    assert "not saved" in save("tags", '{"a": 1}')  # a dict for a list
    assert Drafts("d1").get_version() == 1
    start_worker(["admin_components", "http_components"], pool="threads", concurrency=2)
    edits = {
        "title": ("A <b>bold</b> draft", "A <b>bold</b> draft"),
        "words": ("12", 12),
        "ratio": ("0.75", 0.75),
        "done": ("true", True),
        "tags": ('["x", "y"]', ["x", "y"]),
        "meta": ('{"lang": "en", "n": 2}', {"lang": "en", "n": 2}),
    }
    for key, (typed, _) in edits.items():
        assert "saved as update #" in save(key, typed), key
    state = {key: Drafts("d1").read_state(key) for key in edits}
    assert state == {key: value for key, (_, value) in edits.items()}

    # ordered: an edit waits behind the update ahead of it, and lands after it
    notes = Notes("n2")
    notes.read_state("notes")
    gate = tmp_path / "gate"
    notes.run("gate", {"path": str(gate)})
    result: dict[str, str] = {}
    editor = threading.Thread(
        target=lambda: result.update(text=save("notes", '["edited"]', "Notes", "n2"))
    )
    editor.start()
    wait_for(lambda: notes.get_version() == 1 and _seq(redis_url, "Notes__n2") == 2, 10, "the edit")
    gate.touch()
    editor.join(30)
    assert "saved as update #2" in result["text"]
    assert notes.read_state("notes") == ["edited"]  # gate's ["gate"] came first, then the edit


def _seq(url: str, name: str) -> int:
    import redis

    from motion.floor import keys as K

    return int(redis.Redis.from_url(url).hget(K.InstanceKeys.of(name).meta, "seq") or 0)


def test_read_only_mode_shows_no_editor_and_refuses_edits(redis_url: str) -> None:
    Drafts("r1").read_state("title")
    client = testclient.TestClient(board(key="", read_only=True))
    page = client.get("/instance", params={"component": "Drafts", "id": "r1"}).text
    assert "read-only" in page.lower() and "/instance/edit" not in page
    body = {"csrf": "0" * 64, "component": "Drafts", "id": "r1", "key": "title"}
    refused = client.post("/instance/edit", data={**body, "value": "x"})
    assert refused.status_code == 403 and "read-only" in refused.text
    assert Drafts("r1").read_state("title") == "untitled"


def test_the_dashboard_command(redis_url: str, tmp_path: Path) -> None:
    command = [sys.executable, "-m", "motion.tools.cli", "dashboard"]
    env = motion_env(redis_url)
    refused = subprocess.run(
        [*command, "--host", "0.0.0.0"], env=env, capture_output=True, text=True, timeout=60
    )
    assert refused.returncode == 2 and "MOTION_DASHBOARD_KEY" in refused.stderr
    short = subprocess.run(
        command, env={**env, "MOTION_DASHBOARD_KEY": "short"}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert short.returncode == 2 and "at least 32" in short.stderr
    Notes("cli-1").read_state("owner")
    port = free_port()
    log = tmp_path / "dashboard.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), "-I", "admin_components"],
            env=env, cwd=ROOT, stdout=out, stderr=out,
        )  # fmt: skip
    try:

        def home() -> str | None:
            assert proc.poll() is None, log.read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
                    return str(page.read().decode())
            except (urllib.error.URLError, ConnectionError):
                return None

        assert "Notes" in wait_for(home, 60, "the dashboard to answer", interval=0.1)
    finally:
        proc.terminate()
        proc.wait(20)


def test_instance_page_lists_pending_updates_and_dead_letters(
    redis_url: str, start_worker: Any, tmp_path: Path
) -> None:
    notes = Notes("busy")
    notes.read_state("owner")
    start_worker(["admin_components"], pool="threads")
    notes.run("add", {"text": SCRIPT, "fail": True})  # update 1: a dead letter
    with pytest.raises(Exception, match="refusing note"):
        notes.flush_update(timeout=30)
    gate = tmp_path / "gate"
    notes.run("gate", {"path": str(gate)})  # update 2 holds the drain
    notes.run("add", {"text": "three"})
    notes.run("add", {"text": "four"})
    client = testclient.TestClient(board(key=""))
    page = client.get("/instance", params={"component": "Notes", "id": "busy"}).text
    gate.touch()
    dead = page[page.index('id="dead-list"') :]
    assert '<tr data-seq="1"><td>#1</td><td>add</td><td>remember</td>' in dead
    assert "RuntimeError: refusing note" in dead and "<script" not in page
    assert 'form class="inline" method="post" action="/instance/retry"' in dead
    pending = page[page.index('id="pending-list"') :]
    for seq in (3, 4):
        assert f'<tr data-seq="{seq}"><td>#{seq}</td><td>add</td>' in pending
    assert 'id="controls"' in page and 'action="/instance/pause"' in page
    assert page.count("<svg") == 3  # the component's charts
    notes.flush_update(timeout=30)
    assert notes.read_state("notes")[-2:] == ["three", "four"]


def test_writes_are_refused_read_only_forged_or_pointless(redis_url: str) -> None:
    Notes("ro").read_state("owner")
    client = testclient.TestClient(board(key="", read_only=True))
    page = client.get("/instance", params={"component": "Notes", "id": "ro"}).text
    assert "/instance/retry" not in page and "/instance/pause" not in page
    for action in ("retry", "drop", "pause", "resume", "edit"):
        body = {"csrf": "0" * 64, "component": "Notes", "id": "ro", "seq": "1"}
        refused = client.post(f"/instance/{action}", data=body)
        assert refused.status_code == 403 and "read-only" in refused.text, action
    writer = testclient.TestClient(board(key=""))
    token = csrf_of(writer.get("/instance", params={"component": "Notes", "id": "ro"}).text)
    assert (
        writer.post("/instance/pause", data={"component": "Notes", "id": "ro"}).status_code == 403
    )
    missing = {"csrf": token, "component": "Ghost", "id": "x", "seq": "1"}
    reply = writer.post("/instance/retry", data=missing)
    assert reply.status_code == 404 and "Ghost__x does not exist" in reply.text
    no_letter = writer.post("/instance/retry", data={**missing, "component": "Notes", "id": "ro"})
    assert no_letter.status_code == 200 and "not done:" in no_letter.text
    assert "Notes__ro: update #1 is not a dead letter" in no_letter.text
    bad = writer.post(
        "/instance/drop", data={**missing, "component": "Notes", "id": "ro", "seq": "x"}
    )
    assert "is not an update number" in bad.text


def test_pause_and_resume_a_flow_from_the_dashboard(redis_url: str, start_worker: Any) -> None:
    notes = Notes("paused")
    notes.read_state("owner")
    start_worker(["admin_components"], pool="threads")
    client = testclient.TestClient(board(key=""))
    page = client.get("/instance", params={"component": "Notes", "id": "paused"}).text
    body = {"csrf": csrf_of(page), "component": "Notes", "id": "paused", "flow": "add"}
    paused = client.post("/instance/pause", data=body).text
    assert "flow &#x27;add&#x27; paused" in paused
    assert '<li data-hold="add">add: held (pause)</li>' in paused
    notes.run("add", {"text": "waits"})
    notes.run("gate", {"path": "/"})  # another flow goes on meanwhile
    wait_for(lambda: "gate" in notes.read_state("notes"), 30, "the other flow")
    page = client.get("/instance", params={"component": "Notes", "id": "paused"}).text
    assert '<tr data-seq="1"><td>#1</td><td>add</td>' in page and "<td>held</td>" in page
    assert notes.read_state("notes") == ["gate"]
    resumed = client.post("/instance/resume", data=body).text
    assert "flow &#x27;add&#x27; resumed" in resumed and 'id="holds">No hold.' in resumed
    wait_for(lambda: notes.read_state("notes") == ["gate", "waits"], 30, "the held update")


def test_history_lists_versions_and_diffs_two_of_them(redis_url: str, start_worker: Any) -> None:
    notes = Notes("diffed")
    notes.read_state("owner")
    start_worker(["admin_components"], pool="threads")
    for text in ("first", SCRIPT, "third"):
        notes.run("add", {"text": text})
    notes.write_state({"owner": "ann"})
    notes.flush_update(timeout=30)
    assert notes.get_version() == 5
    client = testclient.TestClient(board(key=""))
    page = client.get("/instance", params={"component": "Notes", "id": "diffed"}).text
    history = page[page.index('id="history"') :]
    for version in (2, 3, 4, 5):
        assert f'<tr data-version="{version}"><td>{version}</td>' in history
    assert "<td>write_state</td><td>owner</td>" in history  # the internal flow, plainly
    assert 'action="/instance/diff"' in history
    diff = client.get(
        "/instance/diff", params={"component": "Notes", "id": "diffed", "a": 2, "b": 5}
    )
    assert diff.status_code == 200 and "Version 2 → version 5" in diff.text
    assert '<span class="del">-nobody</span>' in diff.text  # owner, as of 2 and 5
    assert '<span class="add">+ann</span>' in diff.text
    escaped = "&quot;&lt;script&gt;alert(&#x27;owned&#x27;)&lt;/script&gt;&quot;,"
    assert f'<span class="add">+  {escaped}</span>' in diff.text
    assert "<script" not in diff.text
    gone = client.get(
        "/instance/diff", params={"component": "Notes", "id": "diffed", "a": 99, "b": 5}
    )
    assert gone.status_code == 404 and "keeps versions" in gone.text
