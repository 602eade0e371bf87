"""The dashboard in a real browser: headless Chromium (selenium) on ``motion dashboard``,
a real redis-server and a real worker subprocess.

Screenshots go to ``$MOTION_SCREENSHOTS`` (``MOTION_SCREENSHOTS=docs/img`` refreshes the
ones in the docs), else to the test's temporary directory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis

from motion.floor.embedded import free_port
from motion.tools import admin, producer
from tests.conftest import reset_motion
from tests.support import ROOT, RedisServer, Worker, motion_env, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.browser]

EMPTY = {"count": 0, "seqs": []}


@dataclass
class Stack:
    """Redis, a worker with Tally's code and the dashboard, as an operator runs them."""

    url: str
    board: str  # the dashboard's base URL
    client: redis.Redis
    shots: Path

    def page(self, instance: str, component: str = "Tally", **extra: str) -> str:
        query = "".join(f"&{k}={v}" for k, v in extra.items())
        return f"{self.board}/instance?component={component}&id={instance}{query}"

    def version(self, instance: str, component: str = "Tally") -> int:
        meta = f"motion:{{{component}__{instance}}}:meta"
        return int(self.client.hget(meta, "version") or 0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("MOTION_SCREENSHOTS") or folder / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder / "redis").start()
    worker = Worker(server.url, ["ops_tally", "board_shelf"], folder, pool="threads", name="bw")
    port = free_port()
    log = (folder / "dashboard.log").open("wb")
    board = subprocess.Popen(
        [sys.executable, "-m", "motion.tools.cli", "dashboard", "--port", str(port),
         "-I", "ops_tally", "-I", "board_shelf"],
        env=motion_env(server.url), cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    with pytest.MonkeyPatch.context() as patch:
        for name in [n for n in os.environ if n.startswith("MOTION_")]:
            patch.delenv(name)
        patch.setenv("MOTION_REDIS_URL", server.url)
        reset_motion()
        producer.reset()
        try:
            worker.start()
            client = redis.Redis.from_url(server.url)
            wait_for(lambda: client.exists("motion:registered:{Tally}"), 30, "the worker's beat")
            wait_for(lambda: client.exists("motion:registered:{Shelf}"), 30, "the worker's beat")
            wait_for(lambda: answers(f"http://127.0.0.1:{port}/"), 60, "the dashboard")
            yield Stack(server.url, f"http://127.0.0.1:{port}", client, shots)
        finally:
            board.terminate()
            board.wait(20)
            log.close()
            worker.stop()
            producer.reset()
            reset_motion()
            server.stop()


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5):
            return True
    except (urllib.error.URLError, ConnectionError):
        return False


def text_of(browser: Any, css: str) -> str:
    from selenium.webdriver.common.by import By

    return str(browser.find_element(By.CSS_SELECTOR, css).text)


def shown(browser: Any, css: str) -> str:
    """``css``'s text, or "" while the page is (re)loading: an element found just before
    a reload is gone (stale, or "node ... does not belong to the document")."""
    from selenium.common.exceptions import WebDriverException

    try:
        return text_of(browser, css)
    except WebDriverException:  # NoSuchElement, StaleElementReference and the like
        return ""


def test_open_an_instance_and_watch_a_new_version_appear(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    producer.enqueue("Tally", "watched", "hit", {"n": 1}, initial_state=EMPTY)
    wait_for(lambda: stack.version("watched") == 2, 20, "the first update")
    browser.get(f"{stack.board}/")
    browser.find_element(By.LINK_TEXT, "Tally").click()  # components -> instances
    browser.find_element(By.LINK_TEXT, "watched").click()  # -> the instance
    wait_for(lambda: shown(browser, "#version") == "2", 20, "the instance page")
    assert "[\n  1\n]" in text_of(browser, 'tr[data-key="seqs"] pre')
    browser.find_element(By.ID, "watch").click()  # the page now reloads by itself
    assert "watch=1" in browser.current_url
    producer.enqueue("Tally", "watched", "hit", {"n": 5})
    wait_for(lambda: shown(browser, "#version") == "3", 20, "version 3 in the page")
    # the page goes on reloading: read the count the same way
    wait_for(lambda: shown(browser, 'tr[data-key="count"] pre') == "6", 20, "count 6 in the page")
    browser.save_screenshot(str(stack.shots / "dashboard-instance.png"))
    browser.get(stack.page("watched"))  # stop watching (the watched page may be reloading)
    browser.find_element(By.CSS_SELECTOR, "#compare button").click()  # versions 2 -> 3
    wait_for(lambda: shown(browser, "h1") == "Version 2 → version 3", 20, "the diff page")
    assert text_of(browser, '.diff[data-key="count"] .add') == "+6"
    browser.save_screenshot(str(stack.shots / "dashboard-diff.png"))


def test_edit_a_value_and_see_it_committed(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    producer.enqueue("Tally", "edited", "hit", {"n": 2}, initial_state=EMPTY)
    wait_for(lambda: stack.version("edited") == 2, 20, "the first update")
    browser.get(stack.page("edited"))
    field = browser.find_element(By.CSS_SELECTOR, 'tr[data-key="count"] input[name="value"]')
    field.clear()
    field.send_keys("41")
    browser.find_element(By.CSS_SELECTOR, 'tr[data-key="count"] button').click()
    notice = wait_for(lambda: shown(browser, "p.note"), 30, "the save's result")
    assert notice == "'count' saved as update #2: version 3", notice
    assert text_of(browser, "#version") == "3"
    assert text_of(browser, 'tr[data-key="count"] pre') == "41"
    assert admin.inspect_state("Tally__edited")["count"] == 41  # committed in Redis
    browser.save_screenshot(str(stack.shots / "dashboard-edit.png"))


def test_a_script_state_value_is_shown_as_text(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    hostile = "<script>document.title='pwned'</script><b>bold</b>"
    producer.enqueue("Tally", "hostile", "hit", {}, initial_state={**EMPTY, "note": hostile})
    browser.get(stack.page("hostile"))
    assert text_of(browser, 'tr[data-key="note"] pre') == hostile  # the text, as typed
    assert browser.find_elements(By.TAG_NAME, "script") == []  # no element was made
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-key="note"] b') == []
    assert "pwned" not in browser.title
    browser.save_screenshot(str(stack.shots / "dashboard-escaped.png"))


def test_retry_a_dead_letter(stack: Stack, browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    from motion.caller.handle import Instance

    if not hasattr(Instance, "retry"):
        pytest.skip("this release's handle has no retry() (dead letters are listed only)")
    gate = tmp_path / "gate"
    producer.enqueue("Shelf", "flaky", "flaky", {"gate": str(gate)}, initial_state={"n": 0})
    meta = "motion:{Shelf__flaky}:meta"
    wait_for(lambda: int(stack.client.hget(meta, "applied") or 0) == 1, 20, "the failure")
    browser.get(stack.page("flaky", "Shelf"))
    row = '#dead-list tr[data-seq="1"]'
    assert "the gate file" in text_of(browser, row) and "RuntimeError" in text_of(browser, row)
    browser.save_screenshot(str(stack.shots / "dashboard-dead-letter.png"))
    gate.touch()  # the op succeeds from now on
    browser.find_element(By.CSS_SELECTOR, f"{row} form[action='/instance/retry'] button").click()
    notice = wait_for(lambda: shown(browser, "p.note"), 30, "the retry's result")
    assert "retried" in notice, notice
    wait_for(lambda: admin.inspect_state("Shelf__flaky")["n"] == 1, 30, "the retried update")
    browser.get(stack.page("flaky", "Shelf"))
    assert text_of(browser, 'tr[data-key="n"] pre') == "1"


def test_a_table_value_is_shown_as_a_table_and_charts_are_drawn(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    rows = [{"item": "<i>pen</i>", "price": 2}, {"item": "ink", "price": 5}]
    producer.enqueue("Shelf", "tabled", "table", {"rows": rows}, initial_state={"n": 0})
    wait_for(lambda: stack.version("tabled", "Shelf") == 2, 30, "the table update")
    browser.get(stack.page("tabled", "Shelf"))
    cells = browser.find_elements(By.CSS_SELECTOR, 'tr[data-key="table"] table.data td')
    assert [c.text for c in cells] == ["<i>pen</i>", "2", "ink", "5"]
    assert browser.find_elements(By.CSS_SELECTOR, 'tr[data-key="table"] i') == []
    line = '#chart-updates polyline[data-series="applied"]'
    applied = browser.find_element(By.CSS_SELECTOR, line)
    assert float(applied.get_attribute("data-total")) >= 1  # this update, this minute
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure.chart svg")) == 3
    browser.save_screenshot(str(stack.shots / "dashboard-table.png"))
    browser.get(f"{stack.board}/component?name=Shelf")
    browser.find_element(By.ID, "charts").screenshot(str(stack.shots / "dashboard-charts.png"))


def test_sign_in_with_a_key_and_a_forged_write_is_refused(
    stack: Stack, browser: Any, tmp_path: Path
) -> None:
    import http.server
    import threading

    from selenium.webdriver.common.by import By

    producer.enqueue("Tally", "guarded", "hit", {"n": 3}, initial_state=EMPTY)
    wait_for(lambda: stack.version("guarded") == 2, 20, "the first update")
    key = "browser-key-0123456789abcdef0123456789abcdef"
    port = free_port()
    log = (tmp_path / "keyed.log").open("wb")
    keyed = subprocess.Popen(
        [sys.executable, "-m", "motion.tools.cli", "dashboard", "--port", str(port),
         "-I", "ops_tally"],
        env=motion_env(stack.url, MOTION_DASHBOARD_KEY=key), cwd=ROOT, stdout=log, stderr=log,
    )  # fmt: skip
    board = f"http://127.0.0.1:{port}"
    attacker = tmp_path / "site"
    attacker.mkdir()
    (attacker / "index.html").write_text(
        f'<form method="post" action="{board}/instance/edit">'
        '<input type="hidden" name="component" value="Tally">'
        '<input type="hidden" name="id" value="guarded">'
        '<input type="hidden" name="key" value="count">'
        '<input type="hidden" name="value" value="666">'
        '<button id="forge">win a prize</button></form>'
    )
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(attacker))  # noqa: E731
    site = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        wait_for(lambda: answers(f"{board}/login"), 60, "the keyed dashboard")
        browser.delete_all_cookies()
        browser.get(f"{board}/instance?component=Tally&id=guarded")
        assert browser.current_url.endswith("/login")  # no session: sign in first
        browser.find_element(By.NAME, "key").send_keys("not-the-key")
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        wait_for(lambda: "Wrong key." in shown(browser, "p.note"), 20, "the refused sign-in")
        browser.find_element(By.NAME, "key").send_keys(key)
        browser.find_element(By.CSS_SELECTOR, "form[action='/login'] button").click()
        wait_for(lambda: "Sign out" in shown(browser, "header"), 20, "the signed-in page")
        browser.get(f"{board}/instance?component=Tally&id=guarded")
        assert text_of(browser, "#version") == "2"
        # a page of another site posts to the dashboard with the operator's cookie
        browser.get(f"http://127.0.0.1:{site.server_address[1]}/")
        browser.find_element(By.ID, "forge").click()
        wait_for(lambda: "stale" in shown(browser, "p.note"), 20, "the refusal")
        browser.save_screenshot(str(stack.shots / "dashboard-forged-write.png"))
        assert stack.version("guarded") == 2  # nothing was enqueued
        assert admin.inspect_state("Tally__guarded")["count"] == 3
        assert int(stack.client.hget("motion:{Tally__guarded}:meta", "seq") or 0) == 1
    finally:
        site.shutdown()
        keyed.terminate()
        keyed.wait(20)
        log.close()
