"""The campaign's checker on hand-made histories: each violation it must catch, caught."""

from __future__ import annotations

from typing import Any

from tests.campaign.checker import Final, check
from tests.campaign.schedule import plan

NAME = "Journal__j0"


def rec(item: str, t0: float, t1: float | None = None, **extra: Any) -> dict[str, Any]:
    """A ``run`` record: accepted, meant to apply, from ``t0`` to ``t1``."""
    base = {"name": NAME, "item": item, "flow": "add", "expect": "apply", "outcome": "ok"}
    return {**base, "t0": t0, "t1": t0 + 0.01 if t1 is None else t1, **extra}


def final(log: list[list[Any]], failures: list[dict[str, Any]] | None = None) -> Final:
    seq = max([s for s, _ in log] + [f["seq"] for f in failures or []], default=0)
    return Final(log, failures or [], seq, seq, 0)


def violations(history, finals, clears=None, snapshots=None) -> list[str]:  # type: ignore[no-untyped-def]
    return check(history, clears or {}, snapshots or {}, {NAME: finals}).violations


def test_a_clean_history_passes() -> None:
    history = [rec("p0:0", 1), rec("p1:0", 2), rec("n:1", 3, expect="fail")]
    failure = {"seq": 3, "flow": "add", "message": "refusing n:1 on purpose"}
    assert violations(history, final([[1, "p0:0"], [2, "p1:0"]], [failure])) == []


def test_lost_duplicated_reordered_and_phantom_updates_are_caught() -> None:
    history = [rec("p0:0", 1), rec("p0:1", 2), rec("p0:2", 3)]
    assert any("never applied" in v for v in violations(history, final([[1, "p0:0"]])))
    twice = final([[1, "p0:0"], [2, "p0:0"], [3, "p0:1"], [4, "p0:2"]])
    assert any("applied 2 times" in v for v in violations(history, twice))
    swapped = final([[1, "p0:1"], [2, "p0:0"], [3, "p0:2"]])
    assert any("out of order" in v for v in violations(history, swapped))
    backwards = final([[2, "p0:0"], [1, "p0:1"], [3, "p0:2"]])
    assert any("not strictly increasing" in v for v in violations(history, backwards))
    phantom = final([[1, "p0:0"], [2, "p0:1"], [3, "p0:2"], [4, "x:9"]])
    assert any("never enqueued" in v for v in violations(history, phantom))


def test_a_cleared_incarnation_leaking_into_the_next_is_caught() -> None:
    history = [rec("p0:0", 1), rec("p0:1", 5)]  # the clear ran from 3 to 4
    clears = {NAME: [(3.0, 4.0)]}
    ok = violations(history, final([[1, "p0:1"]]), clears, {NAME: [[[1, "p0:0"]]]})
    assert ok == []
    leaked = violations(history, final([[1, "p0:0"], [2, "p0:1"]]), clears, {NAME: [[]]})
    assert any("a cleared incarnation leaked" in v for v in leaked)
    # a call that overlapped the clear may have landed on either side
    straddling = [rec("p0:0", 2.5, 3.5), rec("p0:1", 5)]
    assert violations(straddling, final([[1, "p0:0"], [2, "p0:1"]]), clears, {NAME: [[]]}) == []


def test_failures_must_be_the_expected_ones() -> None:
    history = [rec("p0:0", 1), rec("n:1", 2, expect="fail")]
    wrong = {"seq": 1, "flow": "add", "error_type": "UnknownFlowError", "message": "no op"}
    found = violations(history, final([], [wrong]))
    assert any("recorded failed with UnknownFlowError" in v for v in found)
    assert any("must fail was not recorded failed" in v for v in found)
    applied = violations(history, final([[1, "p0:0"], [2, "n:1"]]))
    assert any("should have failed but applied" in v for v in applied)


def test_unaccounted_seqs_and_raw_caller_errors_are_caught() -> None:
    history = [rec("p0:0", 1), rec("p0:1", 2, outcome="ResponseError", motion_error=False)]
    gap = Final([[1, "p0:0"]], [], 2, 2, 0)
    found = violations(history, gap)
    assert any("neither applied nor recorded failed: [2]" in v for v in found)
    assert any("raw ResponseError" in v for v in found)


def test_a_schedule_of_deploys_alone_has_one_deploy() -> None:
    faults = plan(3, ("deploy",), 10.0, 0.8)
    assert [f.kind for f in faults] == ["deploy"]


def test_a_held_update_may_be_passed_by_other_flows_but_keeps_its_own_order() -> None:
    history = [rec("deb:1", 1, flow="burst"), rec("p0:0", 2), rec("deb:2", 3, flow="burst")]
    # rule 0: the debounced updates (seqs 1 and 3) applied after seq 2 of another flow
    assert violations(history, final([[2, "p0:0"], [1, "deb:1"], [3, "deb:2"]])) == []
    swapped = final([[2, "p0:0"], [3, "deb:2"], [1, "deb:1"]])
    assert any("seqs of burst not strictly increasing" in v for v in violations(history, swapped))
    history = [rec("p0:0", 1), rec("p1:0", 2)]
    backwards = final([[2, "p1:0"], [1, "p0:0"]])  # no flow control: the order is global
    assert any("of the rest not strictly" in v for v in violations(history, backwards))
