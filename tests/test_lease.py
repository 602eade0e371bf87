"""Lease renewal: a renewal refused because the holder itself released is not a loss."""

from __future__ import annotations

import logging
import sys
from typing import Any

import pytest

from motion.floor import scripts
from motion.worker import engine
from motion.worker import lease as leases
from tests.support import COMPONENTS, wait_for

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


def test_renewal_after_the_holders_own_release_is_not_a_loss(
    redis_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # On a loaded machine the drain thread may be descheduled between the commit that
    # released the lease and dropping it from the renewer; a renewal sent then finds
    # no lease. That is the holder's own release, not a lease lost to another worker.
    renewals: list[int] = []
    released_at: list[int] = []
    held: list[leases.Lease] = []
    real_run, real_hold, real_drop = scripts.run, leases.RENEWER.hold, leases.RENEWER.drop

    def run(client: Any, name: str, keys: list[str], args: list[Any], fast: bool = False) -> Any:
        reply = real_run(client, name, keys, args, fast)
        if name == "renew":
            renewals.append(int(reply))
        if name == "commit" and isinstance(reply, list) and reply[1] == 1:
            released_at.append(len(renewals))
        return reply

    def hold(lease: leases.Lease) -> None:
        held.append(lease)
        real_hold(lease)

    def late_drop(lease: leases.Lease) -> None:
        if released_at:  # a renewal round runs before the drain thread gets the CPU back
            wait_for(lambda: len(renewals) > released_at[0], 10, "a renewal after the release")
        real_drop(lease)

    monkeypatch.setattr(scripts, "run", run)
    monkeypatch.setattr(leases.RENEWER, "hold", hold)
    monkeypatch.setattr(leases.RENEWER, "drop", late_drop)
    Ledger("renewed").run("add", {"item": "a"})
    with caplog.at_level(logging.WARNING, logger="motion.lease"):
        report = engine.drain(Ledger, "renewed")
    assert report.applied == 1 and released_at, report
    assert renewals[released_at[0]] == 0, "the late renewal should have found no lease"
    assert not held[0].lost.is_set(), "the holder's own release was taken for a lost lease"
    assert "lost the lease" not in caplog.text


def test_each_takeover_lengthens_the_next_lease_until_a_holder_commits(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from motion.floor import keys as K
    from motion.floor import store
    from motion.floor.connection import get_redis

    monkeypatch.setenv("MOTION_LEASE_SECONDS", "1")
    handle = Ledger("strikes")
    handle.run("add", {"item": "a"})
    client, keys = get_redis(), K.InstanceKeys.of(handle.instance_name)

    def begin() -> int:
        """Take the lease as a worker that then dies (never commits or releases); the
        lease's length in ms (its time to live, to the second)."""
        script_keys = [keys.meta, keys.lease, K.stats("Ledger"), keys.inbox, keys.state]
        script_keys += [K.PENDING, K.SWEEP]
        scripts.run(client, "begin", script_keys, [1000, 64, "", keys.name, store.nonce(), 0])
        length = int(round(int(client.pttl(keys.lease)), -3))
        client.delete(keys.lease)  # its lease ran out
        return length

    # the first holder gets the period; each takeover of a holder that never came
    # back gets 4x longer, up to 64x
    assert [begin() for _ in range(5)] == [1000, 4000, 16000, 64000, 64000]
    engine.drain(Ledger, "strikes")  # a holder that commits: the strikes are gone
    assert client.hget(keys.meta, "strikes") is None
    assert handle.read_state("items") == ["a"]
    handle.run("add", {"item": "b"})
    assert begin() == 1000
