"""What the dashboard reads, on a real redis-server (and a real worker for commits): the
per-component name index (paging, prefix search, clears, the lazy build for instances
made before it) and the per-minute counters the commit script keeps."""

from __future__ import annotations

import sys
from typing import Any

import pytest
import redis

from motion.floor import keys as K
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from admin_components import Notes  # noqa: E402
from http_components import Drafts  # noqa: E402


def test_the_name_index_pages_and_searches_by_prefix(redis_url: str) -> None:
    from motion import clear_instance
    from motion.tools import names

    ids = sorted({f"user-{i:03d}" for i in range(60)} | {"admin-1", "user", "z"})
    for instance_id in ids:
        Drafts(instance_id).read_state("title")
    client = redis.Redis.from_url(redis_url)
    assert client.zcard(K.names("Drafts")) == len(ids)  # written by the creation itself
    seen: list[str] = []
    cursor = ""
    while True:
        page = names.page("Drafts", "", cursor, 25)
        assert len(page.ids) <= 25
        seen += page.ids
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert seen == ids  # in id order, each once
    found = names.page("Drafts", "user-01", "", 100)
    assert found.ids == [f"user-01{i}" for i in range(10)] and found.next_cursor == ""
    assert names.page("Drafts", "user-0", "", 5).next_cursor == "user-004"
    assert names.page("Drafts", "nobody", "", 5).ids == []
    assert clear_instance("Drafts__user-005")
    assert "user-005" not in names.page("Drafts", "user-00", "", 100).ids
    assert client.zscore(K.names("Drafts"), "user-005") is None


def test_instances_made_before_the_index_are_added_once(redis_url: str) -> None:
    from motion.tools import names

    for i in range(30):
        Notes(f"old-{i:02d}").read_state("owner")
    client = redis.Redis.from_url(redis_url)
    client.delete(K.names("Notes"), K.names_ready("Notes"))  # as an older release left them
    client.zadd(K.names("Notes"), {"gone-1": 0})  # cleared by a process without the index
    client.set(K.names_ready("Notes"), "1")
    assert names.page("Notes", "", "", 50).ids == []  # ready: no scan; the stale id healed
    assert client.zcard(K.names("Notes")) == 0
    client.delete(K.names_ready("Notes"))
    page = names.page("Notes", "old-1", "", 50)  # the first listing builds the index
    assert page.ids == [f"old-1{i}" for i in range(10)]
    assert client.zcard(K.names("Notes")) == 30 and client.exists(K.names_ready("Notes"))


def test_commits_keep_per_minute_counters(redis_url: str, start_worker: Any) -> None:
    from motion.tools import series

    notes = Notes("counted")
    notes.read_state("owner")
    start_worker(["admin_components"], pool="threads")
    for i in range(5):
        notes.run("add", {"text": f"n{i}"})
    notes.run("add", {"text": "bad", "fail": True})
    with pytest.raises(Exception, match="refusing note"):
        notes.flush_update("add", timeout=30)
    client = redis.Redis.from_url(redis_url)
    minutes = wait_for(
        lambda: [m for m in series.minutes("Notes", hours=1) if m.flows] or None, 10, "counters"
    )
    applied = sum(m.count("applied") for m in minutes)
    failed = sum(m.count("failed") for m in minutes)
    assert (applied, failed) == (5, 1)
    assert sum(m.lag_n for m in minutes) == 6  # every update's enqueue -> commit time
    assert all(m.lag_ms >= 0 for m in minutes)
    assert sum(m.backlog_n for m in minutes) >= 1
    assert len(series.minutes("Notes", hours=24)) == 24 * 60
    keys = list(client.scan_iter(match="motion:minutes:{Notes}:*"))
    assert keys and all(48 * 3600 < client.ttl(k) <= 49 * 3600 for k in keys)  # bounded


def test_state_writes_are_named_plainly_in_status_and_metrics(
    redis_url: str, start_worker: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from motion.tools import cli, metrics

    notes = Notes("written")
    notes.read_state("owner")
    start_worker(["admin_components"], pool="threads")
    notes.write_state({"owner": "ann"})
    notes.flush_update(timeout=30)
    assert cli.main(["status", "Notes"]) == 0
    out = capsys.readouterr().out
    assert "Notes.(write_state): applied 1" in out and "::write" not in out
    collector = metrics.Collector(redis.Redis.from_url(redis_url))
    labels = {s.labels["flow"] for family in collector.collect() for s in family.samples
              if "flow" in s.labels}  # fmt: skip
    assert "(write_state)" in labels and "::write" not in labels


def test_drain_failed_error_is_public() -> None:
    import motion
    import motion.errors

    assert motion.DrainFailedError is motion.errors.DrainFailedError
    assert issubclass(motion.DrainFailedError, motion.MotionError)


def test_the_producer_warns_about_a_flow_no_worker_announced(
    redis_url: str, start_worker: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from motion.tools import producer

    Notes("flows").read_state("owner")
    start_worker(["admin_components"], pool="threads")
    client = redis.Redis.from_url(redis_url)
    wait_for(lambda: client.sismember(K.flows("Notes"), "add"), 30, "the flows announced")
    assert client.smembers(K.flows("Notes")) == {b"add", b"gate"}  # update flows only
    producer.reset()
    with caplog.at_level("WARNING", logger="motion.producer"):
        seq = producer.enqueue("Notes", "flows", "add", {"text": "known"})
        assert not [r for r in caplog.records if "announced" in r.message]
        later = producer.enqueue("Notes", "flows", "summarize", {})  # a rolling deploy's flow
    warned = [r.message for r in caplog.records if "announced" in r.message]
    assert len(warned) == 1 and "'summarize' of Notes" in warned[0] and "add, gate" in warned[0]
    assert later == seq + 1  # accepted: stored, waiting for a worker with the code
