"""An op holding the GIL past the lease, with a second worker process free.

Real redis-server, a real Celery worker subprocess (prefork, two children).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from engine_faults import Effects  # noqa: E402


def test_an_op_holding_the_gil_past_the_lease_commits_with_a_second_child_free(
    redis_url: str,
    start_worker,  # type: ignore[no-untyped-def]
    tmp_path: Path,
) -> None:
    env = {"MOTION_LEASE_SECONDS": "1"}
    start_worker(["engine_faults"], pool="prefork", concurrency=2, name="gil2", env=env)
    handle = Effects("gil-two")
    log = tmp_path / "effects"
    handle.run("hog", {"log": str(log), "n": 26})  # one re.match: ~2 s+, GIL held
    handle.flush_update(timeout=90)
    assert handle.read_state("seqs") == [1]
    runs = log.read_text().split()
    # each takeover gives the next holder a 4x longer lease: an op holding the GIL for
    # up to 16 leases runs at most 3 times (not again and again until timing is lucky)
    assert len(runs) <= 3, f"the op ran {len(runs)} times (its outside effect repeated)"
