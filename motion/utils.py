"""Motion's ``motion.utils`` import path: hands on names defined elsewhere, defines none.

Motion programs write ``from motion.utils import clear_instance, RedisParams``; the
names live in :mod:`motion.admin` and :mod:`motion.settings`. No motion module
imports this one.
"""

from motion.floor.redis_params import RedisParams, get_redis_params
from motion.tools.admin import clear_instance, get_instances, inspect_state

# import_config comes from motion.floor.motionrc (the .motionrc.yml loader) and is handed on here.

__all__ = [
    "RedisParams",
    "clear_instance",
    "get_instances",
    "get_redis_params",
    "inspect_state",
]
