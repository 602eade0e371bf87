"""``motion replay``: re-apply an instance's retained updates through a candidate's ops.

With ``Component(..., retain_updates=N)``, each instance keeps the payloads of at
least its last N applied updates and the exact state before the oldest of them (see
:mod:`motion.floor.history`). :func:`replay` rebuilds, for each instance, a *shadow*
state: it decodes that base and applies the retained updates in order through the
**candidate** definition's update ops, in this process, on an in-memory state. Nothing
is written to Redis (it only reads), so the candidate may share the production
component's name. Then each probe (``{"flow": ..., "props": {...}}``) is served by the
**baseline** (production) definition on the production state and by the candidate on
the shadow state, and :mod:`motion.tools.replay_report` writes both side by side.

The baseline is ``--baseline module:Component``, or else the other definition with the
candidate's name that this process has loaded (the candidate's module may import the
production one). Updates are applied one by one (a run of a batch op's flow is one
call, as a worker does), every retained update is applied: no discard policy drops
one (their ages are measured from their own enqueue time), and an op that fails is
reported with its seq, the shadow state staying as it was before that update.

Tool; uses the worker road (updates), the definition layer (component, definitions,
ops), the floor (awaits, connection, errors, history, inbox, keys, props, store).
"""

from __future__ import annotations

import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Any

from motion.define import definitions
from motion.define.component import Component
from motion.define.ops import call as call_serve
from motion.floor import history as H
from motion.floor import keys as K
from motion.floor import store
from motion.floor.awaits import run_sync
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import CommandLineError, InstanceNotFoundError, NothingRetainedError
from motion.floor.inbox import entry_flow, entry_time
from motion.floor.props import Properties, State
from motion.worker import updates


def load_component(target: str) -> Component:
    """The :class:`Component` named by ``module:Variable`` (the current directory is
    importable)."""
    module_name, sep, var = target.rpartition(":")
    if not sep or not module_name or not var:
        raise CommandLineError(f"{target!r}: name the component as module:Variable.")
    if "" not in sys.path:
        sys.path.insert(0, "")
    module = importlib.import_module(module_name)
    component = getattr(module, var, None)
    if not isinstance(component, Component):
        raise CommandLineError(f"{module_name} has no Component named {var!r}.")
    return component


def default_baseline(candidate: Component) -> Component:
    """The newest other definition loaded here with the candidate's name."""
    others = [d for d in definitions.all_named(candidate.name) if d is not candidate]
    if not others:
        raise CommandLineError(
            f"no production definition of {candidate.name!r} is loaded beside the candidate: "
            f"pass --baseline module:Component (the code the workers run)."
        )
    found = others[-1]
    assert isinstance(found, Component)
    return found


def read_probes(path: str) -> list[dict[str, Any]]:
    """The probes of a JSON-lines file: one ``{"flow": ..., "props": {...}}`` a line."""
    probes = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                probe = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CommandLineError(f"{path}:{number}: not JSON ({exc}).") from exc
            if not isinstance(probe, dict) or not isinstance(probe.get("flow"), str):
                raise CommandLineError(f'{path}:{number}: expected {{"flow": ..., "props": {{}}}}.')
            if not isinstance(probe.get("props", {}), dict):
                raise CommandLineError(f"{path}:{number}: props must be an object.")
            probes.append({"flow": probe["flow"], "props": probe.get("props", {})})
    return probes


@dataclass
class InstanceReplay:
    """The replay of one instance: both states, the updates re-applied, the probes."""

    instance_id: str
    production: dict[str, Any] = field(default_factory=dict)
    shadow: dict[str, Any] = field(default_factory=dict)
    first_seq: int = 0
    seqs: list[int] = field(default_factory=list)
    failures: list[dict[str, Any]] = field(default_factory=list)
    probes: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


@dataclass
class Replay:
    """What :func:`replay` found: one :class:`InstanceReplay` per instance."""

    component: str
    candidate: str
    baseline: str
    instances: list[InstanceReplay] = field(default_factory=list)


def _production(client: Any, baseline: Component, instance_id: str) -> tuple[bytes, State]:
    keys = K.InstanceKeys.of(K.instance_name(baseline.name, instance_id))
    pipe = client.pipeline(transaction=False)
    pipe.hget(keys.meta, "inc")
    pipe.hgetall(keys.state)
    inc, raw = pipe.execute()
    if inc is None:
        raise InstanceNotFoundError(f"{keys.name} does not exist.")
    flat = [x for kv in raw.items() for x in kv]
    return inc, store.decode_state(baseline, instance_id, flat, inc)


def _runs(candidate: Component, entries: list[tuple[int, bytes]]) -> list[list[Any]]:
    """Consecutive updates of one flow the candidate applies with a batch op go together."""
    runs: list[list[Any]] = []
    prev = None
    for seq, entry in entries:
        flow = entry_flow(entry)
        batch = any(op.batch for op in candidate.update_ops(flow))
        if batch and prev == flow and runs and runs[-1][-1][0] == seq - 1:
            runs[-1].append((seq, entry))
        else:
            runs.append([(seq, entry)])
        prev = flow if batch else None
    return runs


def _shadow(
    baseline: Component, candidate: Component, retained: H.Retained, instance_id: str, out: Any
) -> State:
    state = store.decode_state(baseline, instance_id, retained.base, retained.incarnation)
    for run in _runs(candidate, retained.updates):
        at = entry_time(run[0][1])
        try:
            steps = updates.apply_steps(
                baseline, instance_id, state, run, {}, retained.incarnation, at, candidate
            )
            outcome = run_sync(steps)  # async def ops on this thread's own event loop
        except updates.LacksCode as lacking:
            out.failures.append({"seq": lacking.seq, "flow": lacking.flow, "error": lacking.what})
            continue
        for seq, record in outcome.failures:
            out.failures.append({"seq": seq, **json.loads(record)})
        state = outcome.state
        out.seqs += [seq for seq, _ in run]
    return state


def _serve(component: Component, state: State, probe: dict[str, Any]) -> dict[str, Any]:
    op = component.serve_op(probe["flow"])
    if op is None:
        return {"error": f"{component.name} has no serve op for flow {probe['flow']!r}"}
    try:
        return {"output": call_serve(op, state, Properties(probe["props"]))}
    except Exception as exc:  # a probe's failure is part of the report
        return {"error": f"{type(exc).__name__}: {exc}"}


def replay(
    candidate: Component,
    instance_ids: list[str],
    probes: list[dict[str, Any]],
    baseline: Component | None = None,
) -> Replay:
    """Rebuild each instance's state through ``candidate`` and serve ``probes`` on both.

    Reads only. An instance that does not exist or retained nothing gets an ``error``.
    """
    base = baseline if baseline is not None else default_baseline(candidate)
    if base.name != candidate.name:
        raise CommandLineError(
            f"the candidate is {candidate.name!r} but the baseline {base.name!r}: a candidate "
            f"replays the updates of the component of its own name."
        )
    result = Replay(candidate.name, candidate.module, base.module)
    for instance_id in instance_ids:
        item = InstanceReplay(instance_id)
        result.instances.append(item)
        name = K.instance_name(candidate.name, instance_id)
        with translate_errors(f"replaying {name}", name):
            client = get_redis(name)
            try:
                inc, production = _production(client, base, instance_id)
                retained = H.read_retained(client, name)
                if retained is None or retained.incarnation != inc:
                    raise NothingRetainedError(
                        f"{name} has no retained updates: give {candidate.name} "
                        f"retain_updates=N and apply some updates first."
                    )
            except (InstanceNotFoundError, NothingRetainedError) as exc:
                item.error = str(exc)
                continue
        item.first_seq = retained.first_seq
        shadow = _shadow(base, candidate, retained, instance_id, item)
        item.production, item.shadow = dict(production), dict(shadow)
        for probe in probes:
            item.probes.append(
                {
                    **probe,
                    "production": _serve(base, production, probe),
                    "candidate": _serve(candidate, shadow, probe),
                }
            )
    return result
