"""The producer path refuses what a definition refuses (no code needed).

Real redis-server; no worker (the producer's checks come before anything runs).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from motion.errors import DefinitionError
from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.floor.inbox import entry_flow
from motion.tools import producer
from tests.support import register_component

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh(redis_url: str) -> Iterator[str]:
    producer.reset()
    register_component(redis_url, "Ledger")
    yield redis_url
    producer.reset()


@pytest.mark.parametrize("flow", ["add\x01junk", "add\x02123", "add\x00tail"])
def test_a_producer_refuses_a_flow_name_with_header_control_characters(
    fresh: str, flow: str
) -> None:
    # Component refuses such flow names; an entry with one parses to another flow
    # ("add"), so its update is recorded as failed under "add" and skews that flow's
    # pending counters (NUM_NEW_UPDATES discards) instead of being refused here.
    name = K.instance_name("Ledger", "ctl")
    stored: list[str] = []
    try:
        with pytest.raises(DefinitionError):
            producer.enqueue("Ledger", "ctl", flow, {"item": "x"}, initial_state={"seqs": []})
    finally:
        inbox = get_redis().hgetall(K.InstanceKeys.of(name).inbox)
        stored = [entry_flow(entry) for entry in inbox.values()]
    assert stored == [], f"stored an entry whose header reads as flow {stored}"
