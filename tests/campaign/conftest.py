"""Fixtures of the fault campaign: a world per seed, this process pointed at its Redis.

The quick seeds run in the default suite; the long mode (``-m campaign``) only when
``-m`` selects it, as the battery does. ``--campaign-seed N`` (repeatable) replaces
the seeds of whichever mode runs. Each run's schedule and verdict line are printed,
repeated at the end of the session and appended to ``$MOTION_CAMPAIGN_REPORT`` when
that is set.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.campaign.runner import Result
from tests.campaign.world import FAST, World
from tests.conftest import reset_motion
from tests.selection import repeat_lines, skip_unless_selected
from tests.support import COMPONENTS

if str(COMPONENTS) not in sys.path:
    sys.path.insert(0, str(COMPONENTS))

_LINES: list[str] = []
_REPORT = os.environ.get("MOTION_CAMPAIGN_REPORT")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the long mode unless ``-m`` selects ``campaign``."""
    reason = "long fault campaign: run it with -m campaign"
    skip_unless_selected(
        config, items, "campaign", reason, lambda item: bool(item.get_closest_marker("campaign"))
    )


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat each run's verdict line at the end of the session."""
    repeat_lines(terminalreporter, "fault campaign", _LINES)


def report(result: Result) -> None:
    """Print and keep a run's line; fail on any violation, saying how to reproduce it."""
    line = f"[{','.join(result.kinds)}] {result.line()}"
    _LINES.append(line)
    print(line)
    if _REPORT:
        with open(_REPORT, "a") as out:
            out.write(line + "\n")
    violations = result.verdict.violations
    kinds = "\n".join(f"  {n} x {kind}" for kind, n in result.verdict.kinds().most_common())
    assert not violations, (
        f"{len(violations)} violation(s); reproduce with --campaign-seed {result.seed} "
        f"MOTION_CAMPAIGN_KINDS={','.join(result.kinds)}\nby kind:\n{kinds}\nfirst ones:\n"
        + "\n".join(violations[:15])
        + f"\n{result.schedule()}\nnotes: {result.notes[:5]}"
    )


@pytest.fixture
def world_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., World]]:
    """Make the run's :class:`World`; this process's motion talks to its Redis."""
    made: list[World] = []

    def make(size: Any, seed: int, crash_safe: bool) -> World:
        world = World(tmp_path / f"seed-{seed}", size, seed, crash_safe)
        for name in list(os.environ):
            if name.startswith("MOTION_") and not name.startswith("MOTION_CAMPAIGN"):
                monkeypatch.delenv(name)
        monkeypatch.setenv("MOTION_REDIS_URL", world.url)
        monkeypatch.setenv("MOTION_INPROCESS_WORKER", "0")
        for key, value in FAST.items():
            monkeypatch.setenv(key, value)
        reset_motion()
        made.append(world)
        return world

    try:
        yield make
    finally:
        for world in made:
            world.close()
        reset_motion()
