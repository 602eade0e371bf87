"""motion: self-updating LLM prompts on Celery and Redis.

Define a :class:`Component` (state plus flows of serve and update ops), call it to
get an instance handle, and ``run`` flows: the serve op runs inline on the last
committed state, the update ops run on Celery workers, per instance strictly in
order and exactly once as state changes.

``MTable`` and ``MDataFrame`` (the ``table`` extra) are imported on first use, so
``import motion`` never loads pyarrow or pandas.
"""

from typing import Any

from motion.admin import (
    MigrationResult,
    StateMigrator,
    clear_instance,
    copy_db,
    get_instances,
    inspect_state,
)
from motion.application import Application
from motion.component import Component, DiscardPolicy
from motion.errors import (
    ConfigurationError,
    ConnectionFailedError,
    DefinitionError,
    FailedUpdate,
    FlushTimeoutError,
    InstanceClearedError,
    InstanceNotFoundError,
    MissingDependencyError,
    MotionError,
    NoWorkerError,
    PayloadError,
    RedisFullError,
    SerializationError,
    UnknownComponentError,
    UnknownFlowError,
    UpdateFailedError,
)
from motion.instance import ComponentInstance, Instance
from motion.props import Properties, State
from motion.redis_params import RedisParams
from motion.settings import configure

# Motion exported these from the package; loading them lazily keeps pyarrow and
# pandas out of `import motion` (they are not in __all__, so `import *` stays light).
_TABLE_TYPES = ("MDataFrame", "MTable")


def __getattr__(name: str) -> Any:
    if name in _TABLE_TYPES:
        from motion import table

        return getattr(table, name)
    raise AttributeError(f"module 'motion' has no attribute {name!r}")


__version__ = "0.2.0"

__all__ = [
    "Application",
    "Component",
    "ComponentInstance",
    "ConfigurationError",
    "ConnectionFailedError",
    "DefinitionError",
    "DiscardPolicy",
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
    "SerializationError",
    "State",
    "StateMigrator",
    "UnknownComponentError",
    "UnknownFlowError",
    "UpdateFailedError",
    "__version__",
    "clear_instance",
    "configure",
    "copy_db",
    "get_instances",
    "inspect_state",
]
