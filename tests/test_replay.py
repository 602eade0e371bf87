"""``motion replay`` end to end: a worker applies updates of a component with
retain_updates; the replay rebuilds the states through a candidate with another
summary op, serves probes on both, writes the report, and leaves production as it was."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.history import read_retained
from motion.tools import replay, replay_report
from tests.support import COMPONENTS, ROOT, motion_env

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from history_notes import Journal  # noqa: E402


def _dump(name: str) -> dict[str, bytes | None]:
    """Every key of the instance, as DUMP bytes: a byte-level picture of production."""
    client = get_redis()
    keys = sorted(k.decode() for k in client.scan_iter(match=f"motion:{{{name}}}:*"))
    return {key: client.dump(key) for key in keys}


def _feed(instance_id: str, notes: int, flush: bool = False) -> None:
    handle = Journal(instance_id)
    for i in range(notes):
        handle.run("note", {"text": f"{instance_id}-{i}"}, flush_update=flush)
        if i == 2:
            handle.write_state({"tag": "<script>alert(1)</script>"})
    handle.run("summarize", {}, flush_update=True)


def test_the_base_rolls_forward_exactly(redis_url, start_worker) -> None:  # type: ignore[no-untyped-def]
    start_worker(["history_notes"], pool="solo", concurrency=1)
    _feed("r0", 11, flush=True)  # 13 commits with retain_updates=4: several generations
    retained = read_retained(get_redis(), "Journal__r0")
    assert retained is not None
    seqs = [seq for seq, _ in retained.updates]
    assert seqs == list(range(retained.first_seq, 14)) and 4 <= len(seqs) <= 8
    # replaying through the production code itself rebuilds the production state
    result = replay.replay(Journal, ["r0"], [], baseline=Journal)
    item = result.instances[0]
    assert item.error is None and item.seqs == seqs and not item.failures
    assert item.shadow == item.production
    assert item.production["summary"] == "PROD: " + " / ".join(f"r0-{i}" for i in range(11))


def test_replay_through_a_candidate(redis_url, start_worker, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    start_worker(["history_notes"], pool="solo", concurrency=1)
    _feed("r1", 3)  # 5 updates, all retained (2 generations at most)
    _feed("r2", 2)
    Journal("r3")  # exists, retained nothing
    before = {n: _dump(f"Journal__{n}") for n in ("r1", "r2", "r3")}
    probes = tmp_path / "probes.jsonl"
    probes.write_text(
        json.dumps({"flow": "ask", "props": {"q": "what now?"}})
        + "\n\n"
        + json.dumps({"flow": "nope", "props": {}})
        + "\n"
    )
    out = tmp_path / "report"
    cmd = [sys.executable, "-m", "motion.tools.cli", "replay", "--candidate"]
    cmd += ["history_candidate:Journal", "--instances", "r1", "r2", "r3", "nobody"]
    cmd += ["--probes", str(probes), "--out", str(out)]
    env = motion_env(redis_url)
    done = subprocess.run(cmd, env=env, cwd=str(ROOT), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr  # r3 and nobody could not be replayed
    assert "r1: 5 update(s) re-applied, 0 failed" in done.stdout, done.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["component"] == "Journal"
    assert report["candidate"] == "history_candidate" and report["baseline"] == "history_notes"
    r1, r2, r3, nobody = report["instances"]
    assert r1["diff"] == [
        {
            "key": "summary",
            "production": "PROD: r1-0 / r1-1 / r1-2",
            "candidate": "CAND: r1-2 / r1-1 / r1-0",
        }
    ]
    assert r1["candidate_state"]["tag"] == "<script>alert(1)</script>"  # the write replayed
    ask, nope = r1["probes"]
    assert ask["production"] == {"output": "summary=PROD: r1-0 / r1-1 / r1-2 q=what now?"}
    assert ask["candidate"] == {"output": "summary=CAND: r1-2 / r1-1 / r1-0 q=what now?"}
    assert "no serve op" in nope["production"]["error"]
    assert r2["diff"][0]["candidate"] == "CAND: r2-1 / r2-0"
    assert "no retained updates" in r3["error"] and "does not exist" in nobody["error"]
    page = (out / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "CAND: r1-2 / r1-1 / r1-0" in page
    # nothing was written to production: every key byte-identical, no new key
    assert {n: _dump(f"Journal__{n}") for n in ("r1", "r2", "r3")} == before
    assert not list(get_redis().scan_iter(match="motion:{Journal__nobody}*"))


def test_report_escapes_and_probes_checked(tmp_path: Path) -> None:
    result = replay.Replay("C<b>", "m", "n")
    item = replay.InstanceReplay("<i>", production={"k": "<img src=x>"}, shadow={})
    result.instances.append(item)
    page = replay_report.as_html(replay_report.as_json(result))
    assert "<img" not in page and "<i>" not in page and "<b>" not in page
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"props": {}}\n')
    with pytest.raises(ValueError, match=r"bad\.jsonl:1"):
        replay.read_probes(str(bad))


def test_retention_off_keeps_nothing(redis_url, start_worker) -> None:  # type: ignore[no-untyped-def]
    from history_notes import Plain

    start_worker(["history_notes"], pool="solo", concurrency=1)
    Plain("x").run("add", {"n": 1}, flush_update=True)
    keys = K.InstanceKeys.of("Plain__x")
    assert not get_redis().exists(*keys.replay)
    assert read_retained(get_redis(), "Plain__x") is None


def test_paused_updates_are_recorded_and_retained_in_the_order_applied(
    redis_url, start_worker
) -> None:  # type: ignore[no-untyped-def]
    start_worker(["history_notes"], pool="solo", concurrency=1)
    handle = Journal("r4")
    assert handle.pause("note")
    handle.run("note", {"text": "held-1"})  # seq 1, parked
    handle.run("tag", {"tag": "t"}, flush_update=True)  # seq 2, applied first
    handle.run("note", {"text": "held-2"})  # seq 3, parked
    handle.resume("note")
    handle.flush_update(timeout=60)
    records = handle.history()
    assert [r.flows for r in records] == [["note"], ["note"], ["tag"]]
    assert [r.seqs for r in records] == [[3], [1], [2]]
    assert (
        handle.read_state("notes", version=2) == [] and handle.read_state("tag", version=2) == "t"
    )
    retained = read_retained(get_redis(), "Journal__r4")
    assert retained is not None and [seq for seq, _ in retained.updates] == [2, 1, 3]
    item = replay.replay(Journal, ["r4"], [], baseline=Journal).instances[0]
    assert item.shadow == item.production and item.production["notes"] == ["held-1", "held-2"]
