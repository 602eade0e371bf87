"""Motion's ``motion.server.application`` import path: hands on ``Application``.

It lives in :mod:`motion.application`. No motion module imports this one.
"""

from motion.tools.http import Application

__all__ = ["Application"]
