"""Motion's ``motion.discard_policy`` import path: hands on :class:`motion.component.DiscardPolicy`.

No motion module imports this one.
"""

from motion.define.component import DiscardPolicy

__all__ = ["DiscardPolicy"]
