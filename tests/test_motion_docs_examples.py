"""The documentation: every example program runs, the site builds, the reference is complete.

Each example in ``docs/examples.md`` is written to a file; one worker subprocess
imports them all (as ``motion worker -I <name>`` would), and each program then runs
as ``__main__`` in this process against the test's redis-server. The ``assert``
lines in the examples are the checks.
"""

from __future__ import annotations

import importlib.util
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

import motion
from tests.support import COMPONENTS, ROOT

DOCS = ROOT / "docs"
EXAMPLE = re.compile(r"```python\n# (\w+)\.py\n(.*?)```", re.DOTALL)


def examples() -> dict[str, str]:
    """``{name: source}`` of every example program in docs/examples.md."""
    found = {name: code for name, code in EXAMPLE.findall((DOCS / "examples.md").read_text())}
    assert len(found) >= 8, "docs/examples.md lost its examples"
    return found


@pytest.mark.integration
def test_every_example_runs(redis_url, start_worker, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    programs = examples()
    for name, code in programs.items():
        (tmp_path / f"{name}.py").write_text(code)
    path = os.pathsep.join([str(tmp_path), str(COMPONENTS), str(ROOT)])
    start_worker(sorted(programs), pool="threads", concurrency=4, env={"PYTHONPATH": path})
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in programs:
        try:
            runpy.run_path(str(tmp_path / f"{name}.py"), run_name="__main__")
        except AssertionError as exc:
            raise AssertionError(f"example {name}.py: {exc!r}") from exc


def test_api_reference_names_every_public_name() -> None:
    reference = (DOCS / "api.md").read_text()
    missing = [name for name in motion.__all__ if f"`{name}" not in reference]
    assert not missing, f"docs/api.md does not document {missing}"


def test_cli_page_names_every_command() -> None:
    page = (DOCS / "cli.md").read_text()
    for command in ("list", "inspect", "clear", "status", "flush", "copy", "worker", "metrics"):
        assert f"motion {command}" in page, command


@pytest.mark.skipif(importlib.util.find_spec("mkdocs") is None, reason="mkdocs not installed")
def test_docs_build_strict(tmp_path: Path) -> None:
    config = DOCS / "mkdocs" / "mkdocs.yml"
    site = tmp_path / "site"
    # not -q: quiet mode hides the warnings that --strict turns into a failure
    out = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config), "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "examples" / "index.html").exists()
