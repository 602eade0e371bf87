"""``motion.errors``: the error tree's public path; hands the names on, defines none.

The tree (rooted at ``MotionError``) lives in :mod:`motion.floor.errors`. No motion
module imports this one.
"""

from motion.floor.errors import *  # noqa: F403  (every name of the tree, as before)
