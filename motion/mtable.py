"""Motion's import path ``motion.mtable`` for :class:`~motion.table.MTable`.

Only hands the name on; the class lives in :mod:`motion.table`. Needs the ``table``
extra: without it, importing this module raises
:class:`~motion.errors.MissingDependencyError` naming the pip command.
"""

from motion.define.table import MTable

__all__ = ["MTable"]
