"""Motion's ``motion.migrate`` import path: hands on :mod:`motion.admin`'s migration names.

No motion module imports this one.
"""

from motion.tools.admin import MigrationResult, StateMigrator

__all__ = ["MigrationResult", "StateMigrator"]
