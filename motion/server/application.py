"""Motion's ``motion.server.application`` import path: hands on ``Application``.

It lives in :mod:`motion.application`. No motion module imports this one.
"""

from motion.application import Application

__all__ = ["Application"]
