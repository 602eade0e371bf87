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

    def page(self, instance: str, **extra: str) -> str:
        query = "".join(f"&{k}={v}" for k, v in extra.items())
        return f"{self.board}/instance?component=Tally&id={instance}{query}"

    def version(self, instance: str) -> int:
        return int(self.client.hget(f"motion:{{Tally__{instance}}}:meta", "version") or 0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("browser")
    shots = Path(os.environ.get("MOTION_SCREENSHOTS") or folder / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder / "redis").start()
    worker = Worker(server.url, ["ops_tally"], folder, pool="threads", name="bw")
    port = free_port()
    log = (folder / "dashboard.log").open("wb")
    board = subprocess.Popen(
        [sys.executable, "-m", "motion.tools.cli", "dashboard", "--port", str(port),
         "-I", "ops_tally"],
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
    """``css``'s text, or "" while the page is (re)loading."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return text_of(browser, css)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def test_open_an_instance_and_watch_a_new_version_appear(stack: Stack, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    producer.enqueue("Tally", "watched", "hit", {"n": 1}, initial_state=EMPTY)
    wait_for(lambda: stack.version("watched") == 2, 20, "the first update")
    browser.get(f"{stack.board}/")
    browser.find_element(By.LINK_TEXT, "Tally").click()  # components -> instances
    browser.find_element(By.LINK_TEXT, "watched").click()  # -> the instance
    assert text_of(browser, "#version") == "2"
    assert "[\n  1\n]" in text_of(browser, 'tr[data-key="seqs"] pre')
    browser.find_element(By.ID, "watch").click()  # the page now reloads by itself
    assert "watch=1" in browser.current_url
    producer.enqueue("Tally", "watched", "hit", {"n": 5})
    wait_for(lambda: shown(browser, "#version") == "3", 20, "version 3 in the page")
    assert text_of(browser, 'tr[data-key="count"] pre') == "6"
    browser.save_screenshot(str(stack.shots / "dashboard-instance.png"))


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
