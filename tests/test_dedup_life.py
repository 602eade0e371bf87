"""A ``dedup_key`` names an update of one life of an instance: its record is not this
life's once the instance was cleared (``clear_instance`` scans for the dedup keys, so
an enqueue between its scan and its delete leaves one behind), and a retry with the key
in the new life enqueues the update there instead of returning the old life's seq.

Real redis-server; no worker (the updates stay in the inbox).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from motion.floor import keys as K
from motion.floor.connection import get_redis
from motion.tools import admin
from tests.support import COMPONENTS

pytestmark = pytest.mark.integration
sys.path.insert(0, str(COMPONENTS))
from ledger import Ledger  # noqa: E402


def test_a_dedup_record_of_a_cleared_life_does_not_swallow_the_retry(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    handle = Ledger("dedup-life")
    handle.submit("add", {"item": 0})  # the first life: seq 1
    client = get_redis()
    keys = K.InstanceKeys.of(handle.instance_name)
    # its enqueue was long ago: its dedup records expired (they live one to two periods)
    client.delete(*client.keys(keys.prefix.replace("{", "[{]").replace("}", "[}]") + "dedup:*"))
    real = admin._scan

    def scan_then_enqueue(client: Any, pattern: str) -> Iterator[str]:
        found = list(real(client, pattern))
        # between the clear's scan and its delete, a caller enqueues with a key
        handle.submit("add", {"item": 1}, dedup_key="event-7")
        return iter(found)

    monkeypatch.setattr(admin, "_scan", scan_then_enqueue)
    assert admin.clear_instance(handle.instance_name) is True
    monkeypatch.setattr(admin, "_scan", real)
    assert not client.exists(keys.meta)  # cleared, and the update with it
    ticket = handle.submit("add", {"item": 1}, dedup_key="event-7")  # the caller retries
    # the new life holds the update, as the ticket says (not the old life's seq 2)
    assert client.hget(keys.meta, "seq") == b"1"
    assert client.hlen(keys.inbox) == 1
    assert ticket.seq == 1 and ticket.incarnation == client.hget(keys.meta, "inc").decode()
    # and within the new life, the key still enqueues once
    again = handle.submit("add", {"item": 1}, dedup_key="event-7")
    assert again.seq == 1 and client.hlen(keys.inbox) == 1


def test_a_dedup_record_stays_a_bare_seq_that_every_version_reads(redis_url: str) -> None:
    """A process of the previous version, still running during a rolling deploy, reads a
    record as ``HGET token`` -> seq: the record stays the seq alone (the life is a field
    of its own), and a record that version wrote (no life field) still deduplicates."""
    handle = Ledger("dedup-format")
    first = handle.submit("add", {"item": 0}, dedup_key="evt-1")
    client = get_redis()
    keys = K.InstanceKeys.of(handle.instance_name)
    pattern = keys.prefix.replace("{", "[{]").replace("}", "[}]") + "dedup:*"
    (dedup,) = client.keys(pattern)
    assert client.hget(dedup, "k:evt-1") == str(first.seq).encode()
    assert client.hget(dedup, "\0inc") == client.hget(keys.meta, "inc")
    client.delete(dedup)
    client.hset(dedup, "k:evt-2", 7)  # as the previous version wrote it: no life field
    client.pexpire(dedup, 60_000)
    assert handle.submit("add", {"item": 1}, dedup_key="evt-2").seq == 7
    assert client.hlen(keys.inbox) == 1  # nothing enqueued for the retry
