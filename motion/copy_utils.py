"""Motion's ``motion.copy_utils`` import path: hands on :func:`motion.admin.copy_db`.

No motion module imports this one.
"""

from motion.tools.admin import copy_db

__all__ = ["copy_db"]
