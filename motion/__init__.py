"""motion: self-updating LLM prompts on Celery and Redis.

Define a :class:`Component` (state plus flows of serve and update ops), call it to
get an instance handle, and ``run`` flows: the serve op runs inline on the last
committed state, the update ops run on Celery workers, per instance strictly in
order and exactly once as state changes.
"""

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
    InstanceNotFoundError,
    MissingDependencyError,
    MotionError,
    PayloadError,
    RedisFullError,
    SerializationError,
    UnknownComponentError,
    UnknownFlowError,
    UpdateFailedError,
)
from motion.instance import Instance
from motion.props import Properties, State
from motion.settings import RedisParams, configure

ComponentInstance = Instance  # Motion's name for the handle type

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
    "InstanceNotFoundError",
    "MigrationResult",
    "MissingDependencyError",
    "MotionError",
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
