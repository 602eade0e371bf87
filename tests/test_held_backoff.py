"""Held instances are re-woken later and later, not every sweep period forever.

Real redis-server, real Celery worker subprocesses.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import pytest

from motion.floor import keys as K
from motion.floor.connection import get_redis
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from rolling_v2 import Rolling  # noqa: E402  (the callers have the new code)


def test_an_update_needing_a_class_the_worker_lacks_is_not_retaken_every_sweep_period(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = start_worker(["rolling_v1"], pool="solo", concurrency=1, name="old")
    (tmp_path / "new_release").mkdir()
    (tmp_path / "new_release" / "release_notes.py").write_text(
        "class Note:\n    def __init__(self, text):\n        self.text = text\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path / "new_release"))
    notes = importlib.import_module("release_notes")
    handle = Rolling("classy")
    name = handle.instance_name
    meta = K.InstanceKeys.of(name).meta
    client = get_redis()
    handle.run("base", {"note": notes.Note("only the new code can unpickle this")})
    wait_for(lambda: client.hget(meta, "held"), 30, "the instance held")
    reason = json.loads(client.hget(meta, "held"))
    assert "release_notes" in reason["error"]

    def takes() -> int:
        """How often the old worker took the instance and left it held again."""
        lines = old.log.read_text().splitlines()
        marks = ("still held", "waits for code")
        return sum(1 for line in lines if name in line and any(m in line for m in marks))

    # the sweeper's back-off: re-woken after 1, 2, 4 ... sweep periods (1 s here)
    wait_for(lambda: int(client.hget(meta, "sweeps") or 0) >= 3, 60, "three sweeper re-wakes")
    sweeps = int(client.hget(meta, "sweeps") or 0)
    taken = takes()
    assert taken <= sweeps + 2, (
        f"the old worker took the held instance {taken} times while the sweeper re-woke "
        f"it {sweeps} times: it nudges itself every sweep period (its can_apply sees the "
        f"flow, not the class the payload needs), so the back-off never applies"
    )
