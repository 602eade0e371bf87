"""Same-named components: each ``Component`` object applies its own ops.

A Motion test suite defines ``Counter = Component("Counter")`` in many files, all
imported into one pytest process; a notebook re-runs the cell that defines a
component. Each definition's handles must get that definition's update ops, in
the in-process worker too. A separate worker, which applies every update of a
name with the one definition it has, refuses modules that disagree.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from motion.worker.inprocess import stop_inprocess_worker
from tests.support import ROOT, motion_env

pytestmark = pytest.mark.integration

#: one Motion test file: the same code in every file, only the module's STEP differs
TEST_FILE = """
from motion import Component

STEP = {step}
Counter = Component("Counter")


@Counter.init_state
def setup():
    return {{"value": 0, "by": []}}


@Counter.serve("add")
def current(state, props):
    return state["value"]


@Counter.update("add")
def add(state, props):
    return {{"value": state["value"] + STEP, "by": [*state["by"], __name__]}}
"""

#: a notebook cell, run once, then edited and run again
CELL = """
from motion import Component

Counter = Component("Counter")


@Counter.init_state
def setup():
    return {{"value": 0, "ops": []}}


@Counter.update("bump")
def bump(state, props):
    return {{"value": state["value"] + {step}, "ops": [*state["ops"], "+{step}"]}}
"""


def _import(path: Path, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def eight_files(tmp_path: Path) -> Iterator[list[types.ModuleType]]:
    """Eight test modules, ``test_counter_<k>``, each defining ``Counter`` with STEP k."""
    modules = []
    for step in range(1, 9):
        path = tmp_path / f"test_counter_{step}.py"
        path.write_text(TEST_FILE.format(step=step))
        modules.append(_import(path, f"test_counter_{step}"))
    yield modules
    for module in modules:
        sys.modules.pop(module.__name__, None)


def test_eight_same_named_components_each_apply_their_own_ops(inprocess, eight_files) -> None:  # type: ignore[no-untyped-def]
    for step, module in enumerate(eight_files, start=1):
        handle = module.Counter(f"own-{step}")
        assert handle.run("add", flush_update=True) == 0
        handle.run("add")
        handle.flush_update(timeout=30)
        assert handle.read_state("value") == 2 * step, f"{module.__name__} ran another's op"
        assert handle.read_state("by") == [module.__name__] * 2


def test_same_named_handles_on_one_instance_keep_order_and_own_ops(inprocess, eight_files) -> None:  # type: ignore[no-untyped-def]
    handles = [module.Counter("shared") for module in eight_files]
    for i in range(40):
        handles[i % 8].run("add")
    for handle in handles:
        handle.flush_update(timeout=30)
    # one instance, one queue: applied in enqueue order, each by its own file's op
    assert handles[0].read_state("by") == [eight_files[i % 8].__name__ for i in range(40)]
    assert handles[0].read_state("value") == sum(5 * step for step in range(1, 9))


def test_a_redefined_component_serves_new_handles_and_finishes_old_updates(  # type: ignore[no-untyped-def]
    redis_url, monkeypatch
) -> None:
    notebook = types.ModuleType("notebook")
    exec(compile(CELL.format(step=1), "<cell 1>", "exec"), notebook.__dict__)
    old = notebook.Counter
    old("x").run("bump")  # no worker yet: the update stays pending
    old("x").run("bump")

    exec(compile(CELL.format(step=10), "<cell 2>", "exec"), notebook.__dict__)
    new = notebook.Counter
    assert new is not old
    handle = new("x")
    handle.run("bump")

    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "1")  # now let this process apply them
    from tests.conftest import reset_motion

    reset_motion()
    try:
        handle.flush_update(timeout=30)
        # the old cell's updates were made by its definition and ran its op
        assert handle.read_state("ops") == ["+1", "+1", "+10"]
        assert handle.read_state("value") == 12
        assert new("y").run("bump", flush_update=True) is None
        assert new("y").read_state("ops") == ["+10"]
    finally:
        stop_inprocess_worker()


def test_re_running_an_unchanged_cell_does_not_pile_up_definitions() -> None:
    from motion.define import definitions

    notebook = types.ModuleType("notebook_rerun")
    for _ in range(5):
        exec(compile(CELL.format(step=3), "<cell>", "exec"), notebook.__dict__)
    fingerprints = [d.fingerprint() for d in definitions._registry["Counter"]]
    assert fingerprints.count(notebook.Counter.fingerprint()) <= 2


def test_fingerprints_tell_same_named_definitions_apart(eight_files) -> None:  # type: ignore[no-untyped-def]
    prints = {module.Counter.fingerprint() for module in eight_files}
    assert len(prints) == 8, "the same code in eight modules: eight definitions"
    assert len({module.Counter.content() for module in eight_files}) == 1


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "celery", "-A", "workers", "worker"],
        [sys.executable, "-m", "motion.tools.cli", "worker"],
    ],
    ids=["celery", "motion-worker"],
)
def test_a_worker_refuses_two_different_same_named_components(redis_url, command) -> None:  # type: ignore[no-untyped-def]
    args = [*command, "-I", "counter_adds,counter_doubles", "-P", "solo", "--without-mingle"]
    done = subprocess.run(
        args, env=motion_env(redis_url), cwd=ROOT, capture_output=True, text=True, timeout=90
    )
    assert done.returncode != 0
    assert "'Counter' is defined twice" in done.stderr
    assert "counter_adds" in done.stderr and "counter_doubles" in done.stderr


def test_a_worker_with_one_definition_applies_updates_of_other_code(  # type: ignore[no-untyped-def]
    redis_url, start_worker
) -> None:
    # this process's Counter lives in another module than the worker's: different
    # fingerprints, one definition there, so the worker applies them with its own
    module = types.ModuleType("caller_side")
    exec(
        "from motion import Component\nCounter = Component('Counter')\n"
        "@Counter.init_state\ndef setup():\n    return {'value': 0}\n"
        "@Counter.update('add')\ndef add(state, props):\n    return {'value': -1}\n",
        module.__dict__,
    )
    start_worker(["counter_adds"])
    handle = module.Counter("skew")
    handle.run("add", {"n": 5})
    handle.flush_update(timeout=60)
    assert handle.read_state("value") == 5


def _start_inprocess_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MOTION_INPROCESS_WORKER", "1")
    from tests.conftest import reset_motion

    reset_motion()


def test_an_update_made_before_its_definition_grew_keeps_its_ops(redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    notebook = types.ModuleType("notebook_grows")
    exec(compile(CELL.format(step=1), "<cell 1>", "exec"), notebook.__dict__)
    grown = notebook.Counter
    grown("g").run("bump")  # pending; then a later cell adds a flow to the same object
    exec("@Counter.update('other')\ndef other(state, props):\n    return None\n", notebook.__dict__)
    exec(compile(CELL.format(step=10), "<cell 2>", "exec"), notebook.__dict__)
    _start_inprocess_worker(monkeypatch)
    try:
        handle = grown("g")
        handle.run("bump")
        handle.flush_update(timeout=30)
        assert handle.read_state("ops") == ["+1", "+1"]
    finally:
        stop_inprocess_worker()


def test_an_update_of_a_definition_no_longer_here_waits(redis_url, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from motion import FlushTimeoutError
    from motion.define import definitions
    from motion.floor import keys as K
    from motion.floor.connection import get_redis

    gone = types.ModuleType("gone_module")
    exec(compile(CELL.format(step=7), "<gone>", "exec"), gone.__dict__)
    handle = gone.Counter("orphan")
    handle.run("bump")  # made by a definition this process is about to lose
    found = definitions._registry["Counter"]
    monkeypatch.setitem(
        definitions._registry, "Counter", [d for d in found if d is not gone.Counter]
    )
    for step in (2, 3):  # two different definitions, neither made it
        module = types.ModuleType(f"other_{step}")
        exec(compile(CELL.format(step=step), f"<{step}>", "exec"), module.__dict__)
    _start_inprocess_worker(monkeypatch)
    try:
        with pytest.raises(FlushTimeoutError):
            handle.flush_update(timeout=3)
        keys = K.InstanceKeys.of(handle.instance_name)
        client = get_redis()
        assert client.hlen(keys.inbox) == 1, "the update must stay pending"
        assert client.zcard(keys.failed) == 0, "waiting for code is not a failure"
    finally:
        stop_inprocess_worker()
