"""The dashboard: a FastAPI app of server-rendered pages over the operator's view.

``motion dashboard`` serves it; so does ``uvicorn motion.dashboard:dashboard_app``
(Motion's import path). Pages:

==================  ==========================================================
``/``               components, with their per-flow counters
``/component``      a component's instances, in pages, searchable by id prefix
``/instance``       an instance's counters and state by type, with an editor
                    (``watch=1``: reloads every 2 s to show new versions)
``/instance/edit``  (POST) save one key: an ordered ``write_state``
``/login``          sign in with ``MOTION_DASHBOARD_KEY`` (when one is set)
==================  ==========================================================

Who may look is :mod:`motion.tools.board_access` (loopback only without a key; sign-in,
session cookie and CSRF tokens with one); read-only mode (``read_only=True``,
``MOTION_DASHBOARD_READ_ONLY=1``, ``motion dashboard --read-only``) shows no
editor and refuses every edit. Pages come from :mod:`motion.tools.board_html`. Needs
the ``http`` extra. Uses the library only (browse, admin, tokens).
"""

import asyncio
import logging
import os
import secrets
import sys
from typing import Any
from urllib.parse import parse_qs

from motion.floor import keys as K
from motion.floor.errors import (
    ConfigurationError,
    InstanceNotFoundError,
    InvalidInstanceIdError,
    MissingDependencyError,
    MotionError,
    UpdateFailedError,
    install_hint,
)
from motion.tools import admin, browse, names
from motion.tools import board_html as H
from motion.tools.board_access import (
    SESSION_SECONDS,
    Access,
    Session,
    env_key,
    is_loopback,
    request_is_local,
)
from motion.tools.tokens import check_secret

COOKIE = "motion_dashboard"
#: most seconds a save waits for its write to be applied before the page returns
EDIT_WAIT_SECONDS = 10.0
PAGE_SIZE = 50
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger("motion.dashboard")


def _env_read_only() -> bool:
    return os.environ.get("MOTION_DASHBOARD_READ_ONLY", "").strip().lower() in ("1", "true", "yes")


def _require() -> None:
    try:
        import fastapi  # noqa: F401  (imported to check the extra is installed)
    except ImportError as exc:
        raise MissingDependencyError(
            f"the motion dashboard needs FastAPI ({exc.name} is missing); install it with: "
            f"{install_hint('http')}"
        ) from exc


class _Refused(Exception):
    """Ends a request early with ``response`` (a sign-in redirect, a 403 page)."""

    def __init__(self, response: Any) -> None:
        self.response = response


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
    from fastapi.responses import HTMLResponse, RedirectResponse

    access = Access(key)

    def no_edits() -> bool:
        return _env_read_only() if read_only is None else read_only

    app = FastAPI(title="motion dashboard", docs_url=None, redoc_url=None, openapi_url=None)

    def keep(response: Any, session: Session) -> Any:
        """Set ``session``'s cookie on ``response`` (signed, HttpOnly, SameSite=Strict)."""
        response.set_cookie(
            COOKIE, access.cookie(session), max_age=SESSION_SECONDS, httponly=True,
            samesite="strict", path="/",
            secure=os.environ.get("MOTION_DASHBOARD_SECURE_COOKIE", "") == "1",
        )  # fmt: skip
        return response

    def html(body: str, status: int = 200, session: Session | None = None) -> Any:
        response = HTMLResponse(body, status, headers=_HEADERS)
        return keep(response, session) if session is not None and session.new else response

    @app.exception_handler(_Refused)
    async def refused(request: Request, exc: _Refused) -> Any:
        return exc.response

    def enter(request: Request) -> Session:
        """The request's session, or :class:`_Refused` (not local, not signed in)."""
        try:
            key = access.key()
        except ConfigurationError as exc:
            raise _Refused(html(H.page("misconfigured", H.notice(str(exc), True)), 500)) from exc
        session = access.session(request.cookies.get(COOKIE))
        if not key:
            if not request_is_local(request.scope, request.headers.get("host", "")):
                message = (
                    "This dashboard has no MOTION_DASHBOARD_KEY, so it answers only on a "
                    "loopback address (127.0.0.1, ::1) addressed as localhost. Set the key to "
                    "serve it elsewhere."
                )
                raise _Refused(html(H.page("refused", H.notice(message, True)), 403))
            return session or Session(secrets.token_hex(16), operator=False, new=True)
        if session is None:
            raise _Refused(RedirectResponse("/login", 303, headers=_HEADERS))
        return session

    def render(
        request: Request,
        session: Session,
        title: str,
        body: str,
        status: int = 200,
        reload: int = 0,
    ) -> Any:
        csrf = access.csrf(session)
        page = H.page(title, body, csrf=csrf, signed_in=session.operator, reload=reload)
        return html(page, status, session)

    async def form(request: Request, session: Session | None) -> dict[str, str]:
        """The POSTed form fields; :class:`_Refused` unless its CSRF token is right."""
        raw = (await request.body()).decode(errors="replace")
        fields = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        if session is None or not access.csrf_ok(session, fields.get("csrf", "")):
            message = "This form is stale or was not sent from this dashboard; reload and retry."
            raise _Refused(html(H.page("refused", H.notice(message, True)), 403))
        return fields

    @app.get("/")
    def home(request: Request) -> Any:
        session = enter(request)
        rows = [(name, browse.flow_counts(name)) for name in browse.components()]
        return render(request, session, "components", H.components_page(rows))

    @app.get("/component")
    def component_page(
        request: Request, name: str, prefix: str = "", cursor: str = "", size: int = PAGE_SIZE
    ) -> Any:
        session = enter(request)
        size = min(max(size, 1), 500)
        listing = names.page(name, prefix, cursor, size)
        return render(request, session, name, H.instances_page(name, prefix, listing, size))

    def instance_view(
        request: Request,
        session: Session,
        component: str,
        instance_id: str,
        watching: bool = False,
        **note: Any,
    ) -> Any:
        try:
            name = K.instance_name(component, instance_id)
            info = browse.summary(name)
            state = admin.inspect_state(name)
        except (InstanceNotFoundError, InvalidInstanceIdError) as exc:
            return render(request, session, "not found", H.notice(str(exc), True), 404)
        except MotionError as exc:  # e.g. a value refused by MOTION_SIGNING_KEY, Redis down
            log.exception("dashboard: reading %s__%s failed", component, instance_id)
            message = f"cannot show this instance: {type(exc).__name__}: {exc}"
            return render(request, session, "error", H.notice(message, True), 500)
        body = H.instance_page(
            component, instance_id, info, state, browse.flow_counts(component),
            csrf=access.csrf(session), read_only=no_edits(), watching=watching, **note,
        )  # fmt: skip
        reload = H.WATCH_SECONDS if watching else 0
        return render(request, session, instance_id, body, reload=reload)

    @app.get("/instance")
    def instance(request: Request, component: str, id: str, watch: bool = False) -> Any:
        return instance_view(request, enter(request), component, id, watching=watch)

    @app.post("/instance/edit")
    async def edit(request: Request) -> Any:
        session = enter(request)
        if no_edits():
            message = "This dashboard is read-only: editing is off."
            return render(request, session, "read-only", H.notice(message, True), 403)
        fields = await form(request, session)
        component, instance_id = fields.get("component", ""), fields.get("id", "")
        key = fields.get("key", "")
        raw = fields.get("value", "")
        return await asyncio.to_thread(save, request, session, component, instance_id, key, raw)

    def save(
        request: Request, session: Session, component: str, instance_id: str, key: str, raw: str
    ) -> Any:
        """Type the new value as the current one, write it in order, and show the result."""
        try:
            name = K.instance_name(component, instance_id)
            current = admin.inspect_state(name)
            if key not in current or not H.editable(current[key]):
                raise ValueError(f"state key {key!r} is not an editable value")
            value = H.parse_edit(current[key], raw)
            written = browse.write_state(name, {key: value}, EDIT_WAIT_SECONDS)
        except (ValueError, UpdateFailedError) as exc:
            message = f"{key!r} not saved: {exc}"
            return instance_view(request, session, component, instance_id, message=message,
                                 error=True)  # fmt: skip
        except MotionError as exc:
            log.exception("dashboard edit of %s failed", name)
            message = f"{key!r} not saved ({type(exc).__name__}); the dashboard log has details"
            return instance_view(request, session, component, instance_id, message=message,
                                 error=True)  # fmt: skip
        if written.version is None:
            done = f"{key!r} queued as update #{written.seq}; not applied yet (is a worker up?)"
        else:
            done = f"{key!r} saved as update #{written.seq}: version {written.version}"
        return instance_view(request, session, component, instance_id, message=done)

    @app.get("/login")
    def login_page(request: Request) -> Any:
        return html(H.page("sign in", H.login_form()))

    @app.post("/login")
    async def login(request: Request) -> Any:
        raw = (await request.body()).decode(errors="replace")
        given = (parse_qs(raw).get("key") or [""])[0]
        if not access.key_ok(given):
            return html(H.page("sign in", H.login_form("Wrong key.")), 403)
        session = Session(secrets.token_hex(16), operator=True, new=True)
        return keep(RedirectResponse("/", 303, headers=_HEADERS), session)

    @app.post("/logout")
    async def logout(request: Request) -> Any:
        session = access.session(request.cookies.get(COOKIE))
        await form(request, session)
        response = RedirectResponse("/login", 303, headers=_HEADERS)
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
