"""Motion's ``motion.dicts`` import path: hands on ``Properties`` and ``State``.

They live in :mod:`motion.props`. No motion module imports this one.
"""

from motion.floor.props import Properties, State

__all__ = ["Properties", "State"]
