"""One handle shared by many threads or asyncio tasks: each call gets its own failures.

Every update here fails. Each ``run(..., flush_update=True)`` must raise the
failure of the update it enqueued; each ``flush_update()`` the failures of the
updates its own caller enqueued; nothing is reported twice or lost (a caller
that ended without flushing leaves its failures to the next flush).
"""

from __future__ import annotations

import asyncio
import threading

import pytest

from motion import Component, UpdateFailedError

pytestmark = pytest.mark.integration

CALLS = 100

Fragile = Component("Fragile", cache_ttl=0)


@Fragile.init_state
def setup() -> dict:
    return {"calls": 0}


@Fragile.serve("try")
def serve(state, props):
    return props["i"]


@Fragile.update("try")
def always_fails(state, props):
    raise ValueError(f"refusing call {props['i']}")


def _messages(error: BaseException | None) -> list[str]:
    assert isinstance(error, UpdateFailedError), f"expected UpdateFailedError, got {error!r}"
    return [failure.message for failure in error.failures]


def _in_threads(call) -> dict[int, BaseException | None]:  # type: ignore[no-untyped-def]
    """Run ``call(i)`` for every i in its own thread, all started together."""
    raised: dict[int, BaseException | None] = {}
    barrier = threading.Barrier(CALLS)

    def one(i: int) -> None:
        barrier.wait(60)
        try:
            call(i)
            raised[i] = None
        except Exception as exc:
            raised[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return raised


def test_threads_each_get_the_failure_of_their_run(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Fragile("shared-run")
    raised = _in_threads(lambda i: handle.run("try", {"i": i}, flush_update=True))
    assert len(raised) == CALLS
    for i, error in raised.items():
        assert _messages(error) == [f"refusing call {i}"]


def test_threads_each_get_the_failure_of_their_flush(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Fragile("shared-flush")

    def call(i: int) -> None:
        handle.run("try", {"i": i})
        handle.flush_update(timeout=60)

    raised = _in_threads(call)
    assert len(raised) == CALLS
    for i, error in raised.items():
        assert _messages(error) == [f"refusing call {i}"]
    handle.flush_update(timeout=60)  # every failure was reported once: nothing left


def test_asyncio_gather_each_task_gets_its_own_failure(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Fragile("shared-async")

    async def run_flushing(i: int) -> None:
        await handle.arun("try", {"i": i}, flush_update=True)

    async def run_then_flush(i: int) -> None:
        await handle.arun("try", {"i": i})
        await handle.aflush_update(timeout=60)

    async def main() -> tuple[list[BaseException | None], list[BaseException | None]]:
        first = await asyncio.gather(
            *(run_flushing(i) for i in range(CALLS)), return_exceptions=True
        )
        second = await asyncio.gather(
            *(run_then_flush(i) for i in range(CALLS)), return_exceptions=True
        )
        return list(first), list(second)

    for results in asyncio.run(main()):
        assert len(results) == CALLS
        for i, error in enumerate(results):
            assert _messages(error) == [f"refusing call {i}"]


def test_failures_of_callers_that_ended_go_to_the_next_flush_once(inprocess) -> None:  # type: ignore[no-untyped-def]
    handle = Fragile("shared-ended")
    threads = [threading.Thread(target=handle.run, args=("try", {"i": i})) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    with pytest.raises(UpdateFailedError) as raised:
        handle.flush_update(timeout=60)
    messages = sorted(_messages(raised.value))
    assert messages == sorted(f"refusing call {i}" for i in range(CALLS))
    handle.flush_update(timeout=60)  # reported once, not twice
