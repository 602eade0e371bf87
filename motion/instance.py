"""Motion's ``motion.instance`` import path: hands on ``ComponentInstance``, defines none.

The handle lives in :mod:`motion.caller.handle`. No motion module imports this one.
"""

from motion.caller.handle import ComponentInstance, Instance

__all__ = ["ComponentInstance", "Instance"]
