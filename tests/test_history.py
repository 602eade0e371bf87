"""State history on real Redis and a real worker: records, the bound, read_state(version=),
``motion history``, and a cleared instance starting an empty history."""

from __future__ import annotations

import json
import sys

import pytest

from motion import DefinitionError, VersionNotKeptError, clear_instance
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.history import kept_versions, read_history
from motion.tools import cli
from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from history_notes import Journal, Off, Plain  # noqa: E402


@pytest.fixture
def worker(start_worker):  # type: ignore[no-untyped-def]
    return start_worker(["history_notes"], pool="solo", concurrency=1)


def test_history_validated() -> None:
    from motion import Component

    for bad in (-1, 1.5, True, "3", 10_001):
        with pytest.raises(DefinitionError, match="history must be"):
            Component("HistoryBad", history=bad)
    with pytest.raises(DefinitionError, match="retain_updates must be"):
        Component("HistoryBad", retain_updates=-2)
    assert Component("HistoryDefault").history == 20
    assert Component("HistoryDefault").retain_updates == 0


def test_each_version_recorded_and_bounded(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    handle = Journal("j1")
    for i in range(3 + 5):  # K + 5 updates keep K
        handle.run("note", {"text": f"n{i}"}, flush_update=True)
    assert handle.get_version() == 9
    records = handle.history()
    assert [r.version for r in records] == [9, 8, 7]
    assert get_redis().llen(K.InstanceKeys.of("Journal__j1").history) == 3
    newest = records[0]
    assert newest.flows == ["note"]
    assert newest.changed == ["last", "notes"]
    assert newest.values() == {"notes": [f"n{i}" for i in range(8)], "last": "n7"}
    assert newest.values_before() == {"notes": [f"n{i}" for i in range(7)], "last": "n6"}
    assert records[2].values()["last"] == "n5"
    assert len(newest.seqs) == 1 and records[1].seqs[0] == newest.seqs[0] - 1
    assert records[0].at >= records[1].at >= records[2].at
    assert newest.tag.startswith("9.") and newest.tag.encode() == get_redis().hget(
        K.InstanceKeys.of("Journal__j1").meta, "tag"
    )
    assert handle.history(limit=2) == records[:2]
    assert read_history(get_redis(), "Journal__j1") == records  # the public reader
    assert kept_versions(get_redis(), "Journal__j1") == (6, 9)


def test_read_state_at_a_version(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    handle = Journal("j2")
    handle.run("note", {"text": "a"}, flush_update=True)  # v2
    handle.run("tag", {"tag": "t1"}, flush_update=True)  # v3: a key that was absent
    handle.run("note", {"text": "b"}, flush_update=True)  # v4
    handle.run("tag", {"tag": "t2"}, flush_update=True)  # v5
    assert handle.read_state("notes", version=5) == ["a", "b"]
    assert handle.read_state("tag", version=4) == "t1"
    assert handle.read_state("notes", version=3) == ["a"]
    assert handle.read_state("last", version=3) == "a"
    assert handle.read_state("tag", "none", version=2) == "none"  # absent then
    with pytest.raises(VersionNotKeptError, match="keeps versions 2-5") as caught:
        handle.read_state("notes", version=1)  # history=3 keeps 3, 4, 5 (and 2 before them)
    assert caught.value.kept == (2, 5)
    with pytest.raises(VersionNotKeptError):
        handle.read_state("notes", version=6)
    assert handle.read_state("notes") == ["a", "b"]


def test_quick_updates_committed_together_get_a_record_each(redis_url, start_worker) -> None:  # type: ignore[no-untyped-def]
    handle = Plain("p1")
    for i in range(1, 6):  # enqueued before any worker runs: one drain, one commit
        handle.run("add", {"n": i})
    start_worker(["history_notes"], pool="solo", concurrency=1)
    handle.flush_update("add", timeout=60)
    records = handle.history()
    assert [r.version for r in records] == [6, 5, 4, 3, 2]
    assert [r.values()["n"] for r in records] == [15, 10, 6, 3, 1]
    assert [handle.read_state("n", version=v) for v in range(1, 7)] == [0, 1, 3, 6, 10, 15]


def test_history_off_and_write_state(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    off = Off("o1")
    off.run("add", {"n": 2}, flush_update=True)
    assert off.history() == []
    assert not get_redis().exists(K.InstanceKeys.of("Off__o1").history)
    with pytest.raises(VersionNotKeptError, match="keeps versions 2-2"):
        off.read_state("n", version=1)
    plain = Plain("p2")
    plain.write_state({"n": 40})
    record = plain.history()[0]
    assert record.flows == ["::write"] and record.values() == {"n": 40}


def test_cleared_and_recreated_starts_an_empty_history(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    handle = Journal("j3")
    handle.run("note", {"text": "old life"}, flush_update=True)
    assert len(handle.history()) == 1
    assert clear_instance("Journal__j3")
    assert not get_redis().exists(*K.InstanceKeys.of("Journal__j3").all())
    again = Journal("j3")
    assert again.history() == []
    again.run("note", {"text": "new life"}, flush_update=True)
    assert [r.values()["notes"] for r in again.history()] == [["new life"]]


def test_history_cli(redis_url, worker, capsys) -> None:  # type: ignore[no-untyped-def]
    handle = Journal("j4")
    handle.run("note", {"text": "x"}, flush_update=True)
    handle.run("tag", {"tag": "y"}, flush_update=True)
    assert cli.main(["history", "Journal__j4"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("v3 ") and "flows tag" in lines[0] and "changed tag" in lines[0]
    assert lines[1].startswith("v2 ") and "changed last, notes" in lines[1]
    assert cli.main(["history", "Journal__j4", "--limit", "1", "--json", "--values"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["version"] for r in rows] == [3]
    assert rows[0]["values"] == {"tag": "y"} and rows[0]["flows"] == ["tag"]
    assert cli.main(["history", "Journal__nobody"]) == 1
    assert "does not exist" in capsys.readouterr().err


def _tenfold(state):
    return {"total": state["n"] * 10}


def test_a_migration_is_recorded_with_the_whole_state_before(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    from motion import StateMigrator

    handle = Plain("m1")
    handle.run("add", {"n": 4}, flush_update=True)  # v2
    [result] = StateMigrator(Plain, _tenfold).migrate(["m1"], 1, 60)
    assert result.exception is None
    record = handle.history()[0]
    assert record.version == 3 and record.flows == ["::migrate"]
    assert record.values() == {"total": 40} and record.values_before() == {"n": 4}
    assert handle.read_state("n", version=2) == 4 and handle.read_state("total", version=2) is None
    assert handle.read_state("n", version=3) is None and handle.read_state("total", version=3) == 40


def test_save_state_hooks_rebuild_through_load_state(redis_url, worker) -> None:  # type: ignore[no-untyped-def]
    from history_notes import Saved

    handle = Saved("s1")
    for w in ("a", "b", "c"):
        handle.run("word", {"w": w}, flush_update=True)
    assert handle.read_state("words", version=3) == ["a", "b"]
    assert handle.read_state("words", version=1) == []
    assert handle.history()[0].values() == {"<saved>": "a|b|c"}
