"""What the long test sets (battery, campaign) share: run only when ``-m`` selects
them, and repeat their verdict lines at the end of the session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


def skip_unless_selected(
    config: pytest.Config,
    items: list[pytest.Item],
    marker: str,
    reason: str,
    belongs: Callable[[pytest.Item], bool],
) -> None:
    """Skip the items that ``belongs`` picks unless ``-m`` selects ``marker``."""
    expr = config.getoption("markexpr") or ""
    if marker in expr and f"not {marker}" not in expr:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if belongs(item):
            item.add_marker(skip)


def repeat_lines(terminalreporter: Any, title: str, lines: list[str]) -> None:
    """Write ``lines`` again in a section of their own at the end of the session."""
    if lines:
        terminalreporter.section(title)
        for line in lines:
            terminalreporter.write_line(line)
