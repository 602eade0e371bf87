"""The fault campaign: seeded schedules of mixed faults under load, checked per incarnation.

``test_quick_seed`` runs in the default suite (a few seeds, well under a minute in
all) with the kinds of :data:`~tests.campaign.schedule.HOLDING`, or those of
``MOTION_CAMPAIGN_KINDS``. The long mode, ``pytest -m campaign tests/campaign``,
runs minutes per seed (``MOTION_CAMPAIGN_SEEDS``, a comma list, or
``--campaign-seed N``), and each kind that awaits a fix alone, as an expected failure
that turns into a pass once the fix is merged.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import pytest

from tests.campaign.conftest import report
from tests.campaign.runner import run_campaign
from tests.campaign.schedule import AWAITING, enabled_kinds, plan
from tests.campaign.world import SIZES, World

pytestmark = [pytest.mark.integration]

QUICK_SEEDS = (1, 2, 3)
LONG_SEEDS = (101, 102, 103)
#: the seed of the runs of each awaiting kind alone (with it, each found violations)
AWAITING_SEED = 3


def _seeds(config: pytest.Config, default: tuple[int, ...], env: str = "") -> list[int]:
    chosen = config.getoption("--campaign-seed")
    if chosen:
        return list(chosen)
    raw = os.environ.get(env, "") if env else ""
    return [int(s) for s in raw.split(",") if s.strip()] or list(default)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "quick_seed" in metafunc.fixturenames:
        metafunc.parametrize("quick_seed", _seeds(metafunc.config, QUICK_SEEDS))
    if "long_seed" in metafunc.fixturenames:
        seeds = _seeds(metafunc.config, LONG_SEEDS, "MOTION_CAMPAIGN_SEEDS")
        metafunc.parametrize("long_seed", seeds)


def _run(make: Callable[..., World], size_name: str, seed: int, kinds: tuple[str, ...]) -> None:
    size = SIZES[size_name]
    world = make(size, seed, crash_safe="redis_crash" in kinds)
    faults = plan(seed, kinds, size.seconds, size.gap)
    report(run_campaign(world, seed, kinds, faults))


@pytest.mark.timeout(110)
def test_quick_seed(world_factory: Callable[..., World], quick_seed: int) -> None:
    _run(world_factory, "quick", quick_seed, enabled_kinds())


@pytest.mark.campaign
@pytest.mark.timeout(900)
def test_long_seed(world_factory: Callable[..., World], long_seed: int) -> None:
    _run(world_factory, "long", long_seed, enabled_kinds())


@pytest.mark.campaign
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "kind",
    [pytest.param(k, marks=pytest.mark.xfail(reason=f"awaits {w}")) for k, w in AWAITING.items()],
)
def test_awaiting_kind_alone(world_factory: Callable[..., World], kind: str) -> None:
    _run(world_factory, "quick", AWAITING_SEED, (kind,))
