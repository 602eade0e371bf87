"""The dashboard: a FastAPI app of server-rendered pages over the operator's view.

``motion dashboard`` serves it; so does ``uvicorn motion.dashboard:dashboard_app``
(Motion's import path). Pages:

==================  ==========================================================
``/``               components, with their per-flow counters
``/component``      a component's instances (the name index: in pages, searchable
                    by id prefix) and its charts of the last 24 hours
``/instance...``    an instance and the writes on it (:mod:`motion.tools.board_routes`)
``/login``          sign in with ``MOTION_DASHBOARD_KEY`` (when one is set)
==================  ==========================================================

Who may look is :mod:`motion.tools.board_access` (loopback only without a key; sign-in,
session cookie and CSRF tokens with one); read-only mode (``read_only=True``,
``MOTION_DASHBOARD_READ_ONLY=1``, ``motion dashboard --read-only``) shows no
editor and refuses every write. Pages come from :mod:`motion.tools.board_html`. Needs
the ``http`` extra.

Tool; uses tools (board_*, browse, names, series, tokens) and the floor (errors).
"""

import logging
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs

from motion.floor.errors import (
    ConfigurationError,
    MissingDependencyError,
    install_hint,
)
from motion.tools import board_html as H
from motion.tools import browse, names, series
from motion.tools.board_access import COOKIE, HEADERS, Board, Refused, Session, env_key, is_loopback
from motion.tools.board_charts import component_charts
from motion.tools.tokens import check_secret

PAGE_SIZE = 50
log = logging.getLogger("motion.dashboard")


def _require() -> None:
    try:
        import fastapi  # noqa: F401  (imported to check the extra is installed)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the motion dashboard needs FastAPI ({exc.name} is missing); install it with: "
            f"{install_hint('http')}"
        ) from exc


def create_dashboard(key: str | None = None, read_only: bool | None = None) -> Any:
    """A dashboard FastAPI app (see the module docs for its pages and access rules).

    Args:
        key: the operators' key (32+ bytes); ``None`` reads ``MOTION_DASHBOARD_KEY``
            on each request; ``""`` means none (loopback only).
        read_only: no editing; ``None`` reads ``MOTION_DASHBOARD_READ_ONLY``.

    Raises:
        ConfigurationError: a key under 32 bytes.
        MissingDependencyError: without the ``http`` extra.
    """
    _require()
    from fastapi import FastAPI, Request
    from fastapi.responses import RedirectResponse

    from motion.tools import board_routes

    board = Board(key, read_only)
    app = FastAPI(title="motion dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(Refused)
    async def refused(request: Request, exc: Refused) -> Any:
        return exc.response

    @app.get("/")
    def home(request: Request) -> Any:
        session = board.enter(request)
        rows = [(name, browse.flow_counts(name)) for name in browse.components()]
        return board.render(session, "components", H.components_page(rows))

    @app.get("/component")
    def component_page(
        request: Request, name: str, prefix: str = "", cursor: str = "", size: int = PAGE_SIZE
    ) -> Any:
        session = board.enter(request)
        size = min(max(size, 1), 500)
        listing = names.page(name, prefix, cursor, size)
        body = H.instances_page(name, prefix, listing, size)
        body += component_charts(name, series.minutes(name))
        return board.render(session, name, body)

    board_routes.add_instance_routes(app, board)

    @app.get("/login")
    def login_page(request: Request) -> Any:
        return board.html(H.page("sign in", H.login_form()))

    @app.post("/login")
    async def login(request: Request) -> Any:
        raw = (await request.body()).decode(errors="replace")
        given = (parse_qs(raw).get("key") or [""])[0]
        if not board.access.key_ok(given):
            return board.html(H.page("sign in", H.login_form("Wrong key.")), 403)
        session = Session(secrets.token_hex(16), operator=True, new=True)
        return board.keep(RedirectResponse("/", 303, headers=HEADERS), session)

    @app.post("/logout")
    async def logout(request: Request) -> Any:
        session = board.access.session(request.cookies.get(COOKIE))
        await board.form(request, session)
        response = RedirectResponse("/login", 303, headers=HEADERS)
        response.delete_cookie(COOKIE, path="/")
        return response

    return app


def serve(host: str, port: int, read_only: bool, imports: list[str]) -> int:
    """Run the dashboard with uvicorn (``motion dashboard``); returns the exit status.

    Refuses (status 2) a non-loopback ``host`` without ``MOTION_DASHBOARD_KEY``, and a
    key under 32 bytes.
    """
    import importlib

    try:
        key = env_key() and check_secret(env_key(), "MOTION_DASHBOARD_KEY")
    except ConfigurationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not key and not is_loopback(host):
        print(
            f"error: refusing to serve the dashboard on {host} without a key: anyone who can "
            f"reach it could read and edit state. Set MOTION_DASHBOARD_KEY (32+ random bytes) "
            f"or use --host 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    for module in imports:  # components whose code (serializer) the editor should use
        importlib.import_module(module)
    import uvicorn

    app = create_dashboard(read_only=True if read_only else None)
    where = "sign in with MOTION_DASHBOARD_KEY" if key else "open on loopback, no key"
    print(f"motion dashboard on http://{host}:{port}/ ({where})", file=sys.stderr, flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
    return 0


_app: Any = None


def __getattr__(name: str) -> Any:
    """``dashboard_app``: the app Motion's ``motion.dashboard`` path serves, made on first use
    (key and read-only mode from the environment, read on each request)."""
    global _app
    if name == "dashboard_app":
        if _app is None:
            _app = create_dashboard()
        return _app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
