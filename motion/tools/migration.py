"""Motion's ``StateMigrator``: rewrite every instance's state with a function.

A migration is an update like any other: it goes through the instance's inbox, so it
is applied in order with the updates already enqueued and never races them; each
instance's result (or failure) comes back as a :class:`MigrationResult`.

Tool: uses the caller road (a handle per instance), :mod:`motion.tools.admin`
(``get_instances``), the definition layer and the floor.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from motion.define.component import Component
from motion.floor import keys as K
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import (
    DefinitionError,
    InstanceNotFoundError,
    MigrateResultError,
    UpdateFailedError,
)
from motion.floor.inbox import MIGRATE_FLOW, Update
from motion.tools.admin import get_instances


@dataclass
class MigrationResult:
    """The outcome of migrating one instance: ``exception`` is ``None`` on success."""

    instance_id: str
    exception: BaseException | None = None


class _PositionalMigration:
    """Calls a one-parameter migrate function whose parameter is not named ``state``."""

    def __init__(self, func: Callable[[Any], Any]) -> None:
        self.func = func

    def __call__(self, state: Any) -> Any:
        return self.func(state)


def _check_migrate_func(func: Callable[..., Any]) -> Callable[..., Any]:
    P = inspect.Parameter
    if not callable(func):
        raise DefinitionError(f"migrate_func must be a function, got {func!r}.")
    params = list(inspect.signature(func).parameters.values())
    required = [
        p
        for p in params
        if p.default is P.empty and p.kind not in (P.VAR_POSITIONAL, P.VAR_KEYWORD)
    ]
    if any(p.name == "state" for p in params) and all(p.name == "state" for p in required):
        return func
    if len(params) == 1 and params[0].kind in (P.POSITIONAL_ONLY, P.POSITIONAL_OR_KEYWORD):
        return _PositionalMigration(func)
    name = getattr(func, "__name__", "migrate_func")
    raise DefinitionError(
        f"migrate_func {name} must take exactly one parameter, the state, and return the "
        f"new state as a dict, e.g. def {name}(state): return {{**state, 'new_key': 0}}."
    )


class StateMigrator:
    """Rewrite the state of a component's instances with ``migrate_func(state) -> dict``.

    Each migration is enqueued in the instance's inbox and applied by a worker in
    order with the updates already pending (never racing them); the returned
    dict replaces the whole state. ``migrate_func`` travels to the worker inside
    the update (cloudpickle: by value when defined in ``__main__`` or a notebook,
    by reference when importable, in which case workers must import it too).

    Example::

        def add_tags(state):
            return {**state, "tags": []}

        results = StateMigrator(Summary, add_tags).migrate()
        failed = [r for r in results if r.exception]

    Raises:
        TypeError: if ``component`` is not a :class:`~motion.Component`.
        DefinitionError: (a ``ValueError``) if ``migrate_func`` does not take one
            ``state`` parameter.
    """

    def __init__(self, component: Component, migrate_func: Callable[..., Any]) -> None:
        if not isinstance(component, Component):
            raise TypeError(f"component must be a motion Component, got {component!r}.")
        self.component = component
        self.migrate_func = migrate_func
        self._func = _check_migrate_func(migrate_func)

    def migrate(
        self,
        instance_ids: Sequence[str] = (),
        num_workers: int = 4,
        timeout: float | None = None,
    ) -> list[MigrationResult]:
        """Migrate ``instance_ids`` (every instance when empty), ``num_workers`` at a time.

        Returns one :class:`MigrationResult` per instance, in order; a failed
        ``migrate_func``, a missing instance or a timeout is reported there, not
        raised. Each call waits until its migration is applied (``timeout`` s at
        most per instance), so a worker with the component's code must be running.
        """
        prefix = self.component.name + K.SEPARATOR
        ids = [i[len(prefix) :] if i.startswith(prefix) else i for i in instance_ids]
        if not ids:
            ids = get_instances(self.component)
        if not ids:
            return []
        with ThreadPoolExecutor(max(1, num_workers), thread_name_prefix="motion-migrate") as pool:
            results = list(pool.map(lambda i: self._migrate_one(i, timeout), ids))
        _raise_non_dict(results, self.migrate_func)
        return results

    def _migrate_one(self, instance_id: str, timeout: float | None) -> MigrationResult:
        try:
            name = K.instance_name(self.component.name, instance_id)
            with translate_errors(f"migrating {name}", name):
                exists = get_redis(name).exists(K.InstanceKeys.of(name).meta)
            if not exists:  # checked first: constructing a handle would create it
                raise InstanceNotFoundError(f"{name} does not exist.")
            handle = self.component(instance_id)
            # the handle's own enqueue path: same inbox, same order as every update
            seq = handle._enqueue(Update(MIGRATE_FLOW, {"migrate_func": self._func}))
            handle._wait(MIGRATE_FLOW, seq, timeout)
        except Exception as exc:
            return MigrationResult(instance_id, exc)
        return MigrationResult(instance_id, None)


def _raise_non_dict(results: list[MigrationResult], func: Callable[..., Any]) -> None:
    """Raise ``AssertionError`` (as Motion did) if ``func`` returned a non-dict anywhere."""
    for result in results:
        exc = result.exception
        failures = exc.failures if isinstance(exc, UpdateFailedError) else []
        if any(f.error_type == MigrateResultError.__name__ for f in failures):
            name = getattr(func, "__name__", "migrate_func")
            raise MigrateResultError(
                f"{name} must return the new state as a dict (instance {result.instance_id}: "
                f"{failures[0].message}); where it did not, the state was left unchanged."
            ) from exc
