"""Motion's ``motion.migrate`` import path: hands on :mod:`motion.tools.migration`'s names.

No motion module imports this one.
"""

from motion.tools.migration import MigrationResult, StateMigrator

__all__ = ["MigrationResult", "StateMigrator"]
