"""One campaign run: world up, load flowing, the nemesis's schedule, quiescence, the check.

:func:`run_campaign` prints the seed's fault schedule first, so a failing seed is
reproduced with ``--campaign-seed N`` (and the same ``MOTION_CAMPAIGN_KINDS``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tests.battery.harness import advance
from tests.campaign.checker import Verdict, check, read_final
from tests.campaign.nemesis import Nemesis
from tests.campaign.schedule import Fault
from tests.campaign.world import World


@dataclass
class Result:
    """A run's schedule, what the nemesis injected, and the checker's verdict."""

    seed: int
    kinds: tuple[str, ...]
    faults: list[Fault]
    injected: Counter[str] = field(default_factory=Counter)
    verdict: Verdict = field(default_factory=Verdict)
    notes: list[str] = field(default_factory=list)

    def schedule(self) -> str:
        head = f"campaign seed={self.seed} kinds={','.join(self.kinds)}"
        return "\n".join([head, *(f"  {fault.line()}" for fault in self.faults)])

    def line(self) -> str:
        injected = ",".join(f"{k}:{v}" for k, v in sorted(self.injected.items()))
        return f"seed={self.seed} faults={injected} {self.verdict.line()}"


def run_campaign(world: World, seed: int, kinds: tuple[str, ...], faults: list[Fault]) -> Result:
    """Run ``faults`` against ``world`` under load and check the history."""
    result = Result(seed, kinds, faults)
    print(result.schedule(), flush=True)
    world.start()
    world.start_producers()
    client = world.client()
    advance(client, world.names, 3 * world.size.producers)  # the load is flowing
    nemesis = Nemesis(world, faults, kinds)
    try:
        nemesis.run()
    finally:
        history = world.stop_producers()
    stuck = world.quiesce(world.size.quiesce)
    finals = read_final(world.client(), world.names)
    result.verdict = check(history + nemesis.history, nemesis.clears, nemesis.snapshots, finals)
    if stuck:
        result.verdict.violations.insert(0, stuck)
    result.injected = nemesis.injected
    result.notes = nemesis.notes + [f"worker restarted: {why}" for why in world.restarts[:3]]
    return result
