"""``motion.testing``: the public path of :mod:`motion.tools.testing`; defines nothing.

No motion module imports this one.
"""

from motion.tools.testing import local_motion

__all__ = ["local_motion"]
