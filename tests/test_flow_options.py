"""Flow-control options at definition, and the floor's rules (no Redis): what a wrong
option raises, when an update is settled, what a flush waits for."""

from __future__ import annotations

import json

import pytest

from motion import Component, DefinitionError
from motion.errors import FlowPausedError
from motion.floor import parked as P
from motion.floor.inbox import entry_header


def test_debounce_max_wait_and_on_failure_are_checked() -> None:
    C = Component("OptsChecked")
    with pytest.raises(DefinitionError, match="on_failure must be 'skip'"):
        C.update("a", on_failure="retry")
    with pytest.raises(DefinitionError, match="debounce must be a number"):
        C.update("a", debounce=0)
    with pytest.raises(DefinitionError, match="max_wait bounds a debounce"):
        C.update("a", max_wait=3)


def test_two_ops_of_a_flow_disagreeing_on_debounce_name_both() -> None:
    C = Component("OptsDisagree")

    @C.update("f", debounce=1)
    def first(state, props):  # type: ignore[no-untyped-def]
        return None

    with pytest.raises(DefinitionError, match=r"first and .*second of flow 'f' disagree"):

        @C.update("f", debounce=2)
        def second(state, props):  # type: ignore[no-untyped-def]
            return None

    assert C.flow_controlled()
    assert not Component("OptsPlain").flow_controlled()


def test_an_entry_s_due_time_is_read_from_its_header() -> None:
    header = entry_header(b"flow\x021000\x032500\x01fp\x00payload")
    assert (header.flow, header.enqueued_ms, header.due_ms, header.fingerprint) == (
        "flow",
        1000,
        2500,
        "fp",
    )
    assert entry_header(b"flow\x021000\x00p").due_ms is None


def test_settled_means_applied_and_not_parked() -> None:
    assert P.is_settled(5, 5, parked=False)
    assert not P.is_settled(5, 5, parked=True)  # passed by the watermark, but held
    assert not P.is_settled(4, 5, parked=False)


def test_a_flush_raises_for_a_pause_waits_for_a_debounce_and_skips_a_later_timer() -> None:
    members = [b"3:a", b"4:b", b"5:c"]
    with pytest.raises(FlowPausedError) as paused:
        P.waits_on("X__1", "*ALL*", members, {b"hold:b": b"failed:4"}, [])
    assert paused.value.flow == "b" and "retry(4)" in str(paused.value)
    debouncing = {b"dfirst:a": b"1"}
    assert P.waits_on("X__1", "a", members, debouncing, [b"a"])  # a debounce: wait
    assert not P.waits_on("X__1", "c", members, {}, [b"c"])  # due later: not waited for
    assert not P.waits_on("X__1", "d", members, {}, [])  # none of its flow


def test_failure_records_of_parked_updates_are_not_reported_yet() -> None:
    records = [json.dumps({"seq": s}) for s in (1, 2)]
    assert P.without_parked(records, [b"2:f"]) == records[:1]
