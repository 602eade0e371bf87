"""A component's flows as a graph in React Flow's layout (Motion's ``get_graph``).

Owns the JSON shape that ``motion vis`` writes and the dm4ml/motion-vis viewer
reads: ``{"name", "nodes", "edges"}``, one ``state`` node, a ``key`` node per flow,
a ``serve`` node and ``update`` nodes per flow, laid out left to right in rows.
A floor module: it imports nothing from motion; :meth:`motion.Component.get_graph`
hands it plain functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

#: (flow name, its serve function or None, its update functions in order)
FlowFuncs = tuple[str, Callable[..., Any] | None, Sequence[Callable[..., Any]]]


def _source(func: Callable[..., Any]) -> str:
    try:
        return inspect.getsource(func)
    except (OSError, TypeError):  # defined in a REPL or built in: no source to show
        return ""


def _node(node_id: int, x: int, y: int, kind: str, func: Callable[..., Any]) -> dict[str, Any]:
    label = getattr(func, "__name__", repr(func))
    data = {"label": label, "udf": _source(func)}
    return {"id": str(node_id), "position": {"x": x, "y": y}, "data": data, "type": kind}


def react_flow(name: str, flows: Sequence[FlowFuncs], x_offset_step: int = 600) -> dict[str, Any]:
    """The graph of ``flows`` (in the order given) for component ``name``.

    Rows start at y=200, 100 apart; serve nodes sit at x=200, update nodes
    ``x_offset_step`` apart after them; the state node is centred above.
    """
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    state: dict[str, Any] = {
        "id": "1",
        "position": {"x": 0, "y": 0},
        "data": {"label": "state"},
        "type": "state",
    }
    next_id, y, widest = 2, 200, 0
    for flow, serve, updates in flows:
        key: dict[str, Any] = {"id": str(next_id), "position": {"x": 0, "y": y}}
        key.update(data={"label": flow}, type="key")
        nodes.append(key)
        next_id += 1
        served: dict[str, Any] | None = None
        if serve is not None:
            served = _node(next_id, 200, y, "serve", serve)
            nodes.append(served)
            edges.append(_edge(key["id"], served["id"], targetHandle="left"))
            edges.append(_edge(state["id"], served["id"], targetHandle="top"))
            next_id += 1
        x = 200 + x_offset_step
        for func in updates:
            update = _node(next_id, x, y, "update", func)
            nodes.append(update)
            edges.append(_edge(update["id"], state["id"], sourceHandle="top", animated=True))
            if served is not None:
                edges.append(
                    _edge(
                        served["id"],
                        update["id"],
                        sourceHandle="right",
                        targetHandle="left",
                        animated=True,
                    )
                )
            else:
                edges.append(_edge(key["id"], update["id"], targetHandle="left"))
            x += x_offset_step
            next_id += 1
        widest = max(widest, x)
        y += 100
    state["position"] = {"x": int(widest / 2), "y": 0}
    nodes.append(state)
    return {"name": name, "nodes": nodes, "edges": edges}


def _edge(source: str, target: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"e{source}-{target}", "source": source, "target": target, **extra}
