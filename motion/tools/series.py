"""A component's per-minute counters over the last hours, for the dashboard's charts.

The commit script keeps them (see ``commit.lua`` and :func:`motion.floor.keys.series`):
per component, one hash per hour with fields ``<minute>:<counter>``, where minute is
Redis' clock in ms // 60,000 and the counters are

===================================  ===============================================
``applied:<flow>`` ...               updates applied, failed, discarded per flow
``lag_ms``, ``lag_n``                sum and count of enqueue -> commit times (ms)
``backlog``, ``backlog_n``,          updates still waiting in the instance's inbox
``backlog_max``                      after each commit: sum, samples and maximum
===================================  ===============================================

Each hash expires 49 hours after its last write, so at most two days are kept
(about 50 hashes per component). :func:`minutes` reads the hours covering the window
from every shard and sums them by minute.

Tool; uses the floor (connection, keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from motion.floor import indexes
from motion.floor import keys as K
from motion.floor.connection import all_urls, client_for, translate_errors
from motion.floor.settings import get_settings

#: the update outcomes counted per flow
OUTCOMES = ("applied", "failed", "discarded")


@dataclass
class Minute:
    """The counters of one minute (all zero when nothing committed in it)."""

    at: int  # minutes since the epoch (Redis' clock)
    flows: dict[str, dict[str, int]] = field(default_factory=dict)
    lag_ms: int = 0
    lag_n: int = 0
    backlog: int = 0
    backlog_n: int = 0
    backlog_max: int = 0

    def count(self, outcome: str) -> int:
        """Updates with ``outcome`` (applied, failed, discarded) in this minute, all flows."""
        return sum(c.get(outcome, 0) for c in self.flows.values())

    @property
    def lag_mean_ms(self) -> float:
        """Mean enqueue -> commit time of this minute's updates (0 with none)."""
        return self.lag_ms / self.lag_n if self.lag_n else 0.0

    @property
    def backlog_mean(self) -> float:
        """Mean updates left waiting after this minute's commits (0 with none)."""
        return self.backlog / self.backlog_n if self.backlog_n else 0.0


def _add(minute: Minute, counter: str, value: int) -> None:
    kind, _, flow = counter.partition(":")
    if flow and kind in OUTCOMES:
        counts = minute.flows.setdefault(flow, {})
        counts[kind] = counts.get(kind, 0) + value
    elif counter == "backlog_max":
        minute.backlog_max = max(minute.backlog_max, value)
    elif counter in ("lag_ms", "lag_n", "backlog", "backlog_n"):
        setattr(minute, counter, getattr(minute, counter) + value)


def minutes(component: str, hours: int = 24) -> list[Minute]:
    """``component``'s counters for each of the last ``hours * 60`` minutes, oldest first
    (every shard summed; minutes with no commit are zero)."""
    urls = all_urls()
    with translate_errors(f"reading the per-minute counters of {component}"):
        seconds, _ = client_for(urls[0]).time()
    now_minute = int(seconds) // 60
    first = now_minute - hours * 60 + 1
    by_minute = {m: Minute(m) for m in range(first, now_minute + 1)}
    # the hour of a key is the writer's clock, a field's minute Redis': read one more
    # hour on each side and sort the fields by their own minute
    hour_keys = [
        K.series(component, h * 3_600_000) for h in range(first // 60 - 1, now_minute // 60 + 2)
    ]
    for url in urls:
        with translate_errors(f"reading the per-minute counters of {component}"):
            hashes = _hashes(client_for(url), hour_keys)
        for raw in hashes:
            for name, value in raw.items():
                at, _, counter = name.decode().partition(":")
                if at.isdigit() and int(at) in by_minute:
                    _add(by_minute[int(at)], counter, int(value))
    return [by_minute[m] for m in sorted(by_minute)]


def _hashes(client: Any, keys: list[str]) -> list[dict[bytes, bytes]]:
    """The hashes ``keys`` (one pipeline); on a cluster every part of each (read with one
    script per primary), one hash per part, as shards are merged."""
    if not get_settings().redis_cluster:
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        return list(pipe.execute())
    out = []
    for key in keys:
        for _, flat in indexes.each_part(client, key, "HGETALL"):
            out.append(dict(zip(flat[::2], flat[1::2], strict=True)))
    return out
