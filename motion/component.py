"""Motion's ``motion.component`` import path: hands on names, defines none.

They live in :mod:`motion.define.component`. No motion module imports this one.
"""

from motion.define.component import Component, DiscardPolicy

__all__ = ["Component", "DiscardPolicy"]
