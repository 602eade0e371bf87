"""``Properties`` (the props of one run), ``State`` (what ops see of the state) and
``Params`` (a component's read-only parameters).

Floor; uses no other motion module.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Properties(dict[str, Any]):
    """The props of one ``run``: a dict, plus ``serve_result`` once the serve op ran.

    Keys the serve op adds are visible to the flow's update ops, and
    ``props.serve_result`` holds what the serve op returned.
    """

    _serve_result: Any = None
    #: position of this update in the instance's queue (set on workers)
    seq: int | None = None
    #: ``(instance_id, seq)``: stable across re-runs of the same update after a crash
    idempotency_key: tuple[str, int] | None = None
    #: ``run(after=ticket)``: ``True`` when the serve op runs on a state that includes
    #: that update, ``False`` when ``after_timeout`` passed first (``None``: no ``after``)
    fresh: bool | None = None

    @property
    def serve_result(self) -> Any:
        """What the flow's serve op returned (``None`` for an update-only flow)."""
        return self._serve_result

    @serve_result.setter
    def serve_result(self, value: Any) -> None:
        self._serve_result = value

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_props, (dict(self), self._serve_result))


def _rebuild_props(data: dict[str, Any], serve_result: Any) -> Properties:
    props = Properties(data)
    props.serve_result = serve_result
    return props


class State(dict[str, Any]):
    """The state an op sees: a dict of state keys, plus ``instance_id``.

    Treat it as read-only: an update op returns the keys it changes instead.
    """

    def __init__(self, instance_id: str, data: dict[str, Any] | None = None) -> None:
        super().__init__(data or {})
        self.instance_id = instance_id

    def copy(self) -> State:  # keep the type (dict.copy() returns a dict)
        """A shallow copy, still carrying ``instance_id``."""
        return State(self.instance_id, self)


class Params(Mapping[str, Any]):
    """A component's read-only parameters; a missing name raises a helpful KeyError."""

    def __init__(self, component: str, data: Mapping[str, Any]) -> None:
        self._component = component
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        try:
            return self._data[key]
        except KeyError:
            raise KeyError(
                f"{self._component} has no param {key!r}; it has {sorted(self._data)}. "
                f"Pass it as Component({self._component!r}, params={{{key!r}: ...}})."
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        return f"Params({self._data!r})"
