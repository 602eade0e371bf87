"""The house's shape (docs/architecture.md): no import cycle, small rooms with a door
sign, thin modules at Motion's paths, and narrow one-way roads.

The road tests trace (``sys.setprofile``) a warm ``run()`` and a drain of one update
from the Celery task's function to the commit, and count the motion modules whose
Python functions run, leaving out the floor and the definition layer (the component
the user defined, whose properties every call reads).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from motion import Component

PACKAGE = Path(__file__).resolve().parent.parent / "motion"
#: what the road counts leave out: the floor both roads stand on, the definitions
NOT_COUNTED = ("motion.floor.", "motion.define.")
#: Motion's import paths, and the public motion.errors / motion.testing: names only
THIN = {
    "component",
    "copy_utils",
    "dashboard",
    "df",
    "dicts",
    "discard_policy",
    "errors",
    "instance",
    "migrate",
    "mtable",
    "server.application",
    "testing",
    "utils",
}
ROOMS = ("caller", "define", "floor", "tools", "worker")


def modules() -> Iterator[tuple[str, Path]]:
    """Every module of the package, by dotted name."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """The motion modules ``name`` imports anywhere: module level, in functions and
    under ``TYPE_CHECKING`` alike."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                head = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*head, *([base] if base else [])])
            subs = [f"{base}.{alias.name}" for alias in node.names]
            targets = [s for s in subs if s in known] or [base]
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def test_no_import_cycle_counting_every_import() -> None:
    known = dict(modules())
    graph = {name: imports_of(name, path, set(known)) for name, path in known.items()}
    # a package's __init__ runs before its modules: an import of the package is no edge back
    graph = {m: {t for t in targets if not m.startswith(t + ".")} for m, targets in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in graph[node]:
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    assert cycles == []


def test_every_module_is_a_small_room_with_a_door_sign() -> None:
    too_big, unsigned = [], []
    for name, path in modules():
        if len(path.read_text().splitlines()) > 400:
            too_big.append(name)
        if not ast.get_docstring(ast.parse(path.read_text())):
            unsigned.append(name)
    assert too_big == [], "over 400 lines"
    assert unsigned == [], "no module docstring"


def test_the_library_lives_in_its_rooms_and_motions_paths_only_hand_names_on() -> None:
    top = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()
    }
    assert top - {"__init__", *ROOMS, *{t.split(".")[0] for t in THIN}} == set()
    for name in THIN:
        path = PACKAGE.joinpath(*name.split(".")).with_suffix(".py")
        tree = ast.parse(path.read_text())
        assert len(path.read_text().splitlines()) <= 20, name
        defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
        assert defined == [], f"motion.{name} defines {[n.name for n in defined]}"


def test_no_grab_bag_module() -> None:
    bags = {"runtime", "utils", "helpers", "common", "misc"}
    assert [n for n, _ in modules() if n.rpartition(".")[2] in bags] == ["motion.utils"]


Tally = Component("ArchitectureTally")


@Tally.init_state
def _setup() -> dict[str, Any]:
    return {"count": 0}


@Tally.serve("bump")
def _serve_bump(state: Any, props: Any) -> int:
    return int(state["count"]) + 1


@Tally.update("bump")
def _update_bump(state: Any, props: Any) -> dict[str, Any]:
    return {"count": state["count"] + 1}


def modules_run(action: Callable[[], Any]) -> set[str]:
    """The motion modules, the floor and the definitions left out, whose functions ran."""
    seen: set[str] = set()

    def profile(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            name = frame.f_globals.get("__name__", "")
            if name.startswith("motion.") and not name.startswith(NOT_COUNTED):
                seen.add(name)

    sys.setprofile(profile)
    try:
        action()
    finally:
        sys.setprofile(None)
    return seen


@pytest.mark.integration
def test_a_warm_run_walks_through_at_most_four_rooms(redis_url: str) -> None:
    handle = Tally("warm")
    handle.run("bump")  # the instance exists and this process holds its state
    seen = modules_run(lambda: handle.run("bump"))
    assert len(seen) <= 4, sorted(seen)
    assert all(name.startswith("motion.caller.") for name in seen), sorted(seen)


@pytest.mark.integration
def test_a_drain_walks_through_at_most_three_rooms(redis_url: str) -> None:
    from motion.worker.engine import apply_task

    handle = Tally("drained")
    apply_task(Tally.name, "drained")  # the first drain reads the state
    handle.run("bump")
    seen = modules_run(lambda: apply_task(Tally.name, "drained"))
    assert handle.read_state("count") == 1  # the traced drain committed the update
    assert len(seen) <= 3, sorted(seen)
    assert all(name.startswith("motion.worker.") for name in seen), sorted(seen)
