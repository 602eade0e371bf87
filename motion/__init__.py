"""motion: self-updating LLM prompts on Celery and Redis.

Define a :class:`Component` (state plus flows of serve and update ops), call it to
get an instance handle, and ``run`` flows: the serve op runs inline on the last
committed state, the update ops run on Celery workers, per instance strictly in
order and exactly once as state changes.

``MTable`` and ``MDataFrame`` (the ``table`` extra) are imported on first use, so
``import motion`` never loads pyarrow or pandas.

The package: imports every layer and wires them (the only module that does).
"""

import sys
from typing import Any

from motion.caller import host as _host
from motion.caller.handle import ComponentInstance, Instance
from motion.caller.letters import DeadLetter
from motion.caller.ticket import Ticket
from motion.define import component as _component
from motion.define.component import Component, DiscardPolicy
from motion.floor.errors import (
    ConfigurationError,
    ConnectionFailedError,
    DefinitionError,
    DrainFailedError,
    FailedUpdate,
    FlushTimeoutError,
    InstanceClearedError,
    InstanceNotFoundError,
    MissingDependencyError,
    MotionError,
    NoWorkerError,
    PayloadError,
    RedisFullError,
    ReplicationTimeoutError,
    SerializationError,
    UnknownComponentError,
    UnknownFlowError,
    UpdateFailedError,
    VersionNotKeptError,
)
from motion.floor.props import Properties, State
from motion.floor.redis_params import RedisParams
from motion.floor.settings import configure
from motion.tools.admin import clear_instance, copy_db, get_instances, inspect_state
from motion.tools.http import Application
from motion.tools.migration import MigrationResult, StateMigrator

# The layers below know nothing of those above: the package wires them together.
# A component's call makes a caller-road handle; a caller hosts the worker road's
# in-process worker when it should (see motion.caller.host).
_component.set_handle_factory(Instance)


def _start_worker() -> None:
    # imported on first need, so `import motion` loads no Celery
    from motion.worker.inprocess import start_inprocess_worker

    start_inprocess_worker()


def _stop_worker() -> None:
    inprocess = sys.modules.get("motion.worker.inprocess")  # imported only if it was started
    if inprocess is not None:
        inprocess.stop_inprocess_worker()


_host.set_worker(_start_worker, _stop_worker)

# Motion exported these from the package; loading them lazily keeps pyarrow and
# pandas out of `import motion` (they are not in __all__, so `import *` stays light).
_TABLE_TYPES = ("MDataFrame", "MTable")


def __getattr__(name: str) -> Any:
    if name in _TABLE_TYPES:
        from motion.define import table

        return getattr(table, name)
    raise AttributeError(f"module 'motion' has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [
    "Application",
    "Component",
    "ComponentInstance",
    "ConfigurationError",
    "ConnectionFailedError",
    "DeadLetter",
    "DefinitionError",
    "DiscardPolicy",
    "DrainFailedError",
    "FailedUpdate",
    "FlushTimeoutError",
    "Instance",
    "InstanceClearedError",
    "InstanceNotFoundError",
    "MigrationResult",
    "MissingDependencyError",
    "MotionError",
    "NoWorkerError",
    "PayloadError",
    "Properties",
    "RedisFullError",
    "RedisParams",
    "ReplicationTimeoutError",
    "SerializationError",
    "State",
    "StateMigrator",
    "Ticket",
    "UnknownComponentError",
    "UnknownFlowError",
    "UpdateFailedError",
    "VersionNotKeptError",
    "__version__",
    "clear_instance",
    "configure",
    "copy_db",
    "get_instances",
    "inspect_state",
]
