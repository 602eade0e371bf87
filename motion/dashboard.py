"""Motion's import path for the dashboard: ``uvicorn motion.dashboard:dashboard_app``.

Only hands names on; the dashboard lives in :mod:`motion.board`.
"""

from motion.tools.board import create_dashboard, dashboard_app

__all__ = ["create_dashboard", "dashboard_app"]
