"""The dashboard's instance routes: the instance page, the diff of two versions, and the
writes (edit a value, retry or drop a dead letter, pause or resume a flow).

=====================  ==========================================================
``/instance``          counters, state by type, pending updates, dead letters,
                       history, per-flow counters, charts (``watch=1``: reloads)
``/instance/diff``     what changed between versions ``a`` and ``b``
``/instance/edit``     (POST) save one key: an ordered ``write_state``
``/instance/retry``    (POST) retry dead letter ``seq``
``/instance/drop``     (POST) drop dead letter ``seq``
``/instance/pause``    (POST) pause ``flow`` (none: every flow)
``/instance/resume``   (POST) resume ``flow`` (none: every flow)
=====================  ==========================================================

Every POST is refused in read-only mode and without the session's CSRF token; each
answers with the instance page and a notice of what happened.

Tool; uses tools (admin, board_access, board_actions, board_html, board_instance_html,
board_state, browse, series) and the floor (errors, keys).
"""

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from motion.floor import keys as K
from motion.floor.errors import (
    InstanceNotFoundError,
    InvalidInstanceIdError,
    MotionError,
    UpdateFailedError,
)
from motion.tools import admin, board_actions, browse, series
from motion.tools import board_html as H
from motion.tools.board_access import Board, Session
from motion.tools.board_instance_html import InstanceView, diff_page, instance_page
from motion.tools.board_state import diff_html, editable, parse_edit

if TYPE_CHECKING:
    from fastapi import FastAPI

#: most seconds a save waits for its write to be applied before the page returns
EDIT_WAIT_SECONDS = 10.0
log = logging.getLogger("motion.dashboard")


def read_view(component: str, instance_id: str) -> InstanceView:
    """Everything the instance page shows (raises InstanceNotFoundError, MotionError)."""
    name = K.instance_name(component, instance_id)
    info = browse.summary(name)
    view = InstanceView(
        component, instance_id, info, admin.inspect_state(name), browse.flow_counts(component),
        browse.pending(name), browse.dead_letters(name), minutes=series.minutes(component),
    )  # fmt: skip
    try:
        view.history = board_actions.history(component, instance_id)
        if not view.history:
            view.history_note = "No version kept yet (history=0, or no update applied yet)."
    except MotionError as exc:
        log.warning("dashboard: the history of %s is unreadable: %s", name, exc)
        view.history_note = f"history unreadable: {type(exc).__name__}: {exc}"
    return view


def add_instance_routes(app: "FastAPI", board: Board) -> None:
    """Add the instance routes (see the module docs) to the dashboard ``app``."""
    from fastapi import Request

    def show(
        session: Session, component: str, instance_id: str, watching: bool = False, **note: Any
    ) -> Any:
        try:
            view = read_view(component, instance_id)
        except (InstanceNotFoundError, InvalidInstanceIdError) as exc:
            body = H.notice(note.get("message", ""), True) + H.notice(str(exc), True)
            return board.render(session, "not found", body, 404)
        except MotionError as exc:  # e.g. a value refused by MOTION_SIGNING_KEY, Redis down
            log.exception("dashboard: reading %s__%s failed", component, instance_id)
            message = f"cannot show this instance: {type(exc).__name__}: {exc}"
            return board.render(session, "error", H.notice(message, True), 500)
        csrf = board.access.csrf(session)
        body = instance_page(view, csrf=csrf, read_only=board.no_edits(), watching=watching, **note)
        reload = H.WATCH_SECONDS if watching else 0
        return board.render(session, instance_id, body, reload=reload)

    @app.get("/instance")
    def instance(request: Request, component: str, id: str, watch: bool = False) -> Any:
        return show(board.enter(request), component, id, watching=watch)

    @app.get("/instance/diff")
    def diff(request: Request, component: str, id: str, a: int, b: int) -> Any:
        session = board.enter(request)
        try:
            old = board_actions.state_at(component, id, a)
            new = board_actions.state_at(component, id, b)
        except (InstanceNotFoundError, InvalidInstanceIdError) as exc:
            return board.render(session, "not found", H.notice(str(exc), True), 404)
        except (MotionError, LookupError) as exc:  # a version no longer kept
            return board.render(session, "no diff", H.notice(str(exc), True), 404)
        body = diff_page(component, id, a, b, diff_html(old, new))
        return board.render(session, f"{id}: {a} → {b}", body)

    async def writing(request: Request) -> tuple[Session, dict[str, str]] | Any:
        session = board.enter(request)
        if board.no_edits():
            message = "This dashboard is read-only: editing is off."
            return board.render(session, "read-only", H.notice(message, True), 403)
        return session, await board.form(request, session)

    def acted(session: Session, fields: dict[str, str], act: Callable[[], str]) -> Any:
        component, instance_id = fields.get("component", ""), fields.get("id", "")
        try:
            done = act()
        except (ValueError, LookupError, MotionError) as exc:
            if not isinstance(exc, (ValueError, LookupError)):
                log.warning(
                    "dashboard: an action on %s__%s failed: %r", component, instance_id, exc
                )
            message = str(exc) if isinstance(exc, ValueError) else f"not done: {exc}"
            return show(session, component, instance_id, message=message, error=True)
        return show(session, component, instance_id, message=done)

    def seq_of(fields: dict[str, str]) -> int:
        raw = fields.get("seq", "")
        if not raw.isdigit():
            raise ValueError(f"{raw!r} is not an update number")
        return int(raw)

    def route(path: str, act: Callable[[str, str, dict[str, str]], str]) -> None:
        @app.post(path)
        async def post(request: Request) -> Any:
            entered = await writing(request)
            if not isinstance(entered, tuple):
                return entered
            session, fields = entered
            component, instance_id = fields.get("component", ""), fields.get("id", "")
            return await asyncio.to_thread(
                acted, session, fields, lambda: act(component, instance_id, fields)
            )

    route("/instance/edit", lambda c, i, f: save(c, i, f.get("key", ""), f.get("value", "")))
    route("/instance/retry", lambda c, i, f: board_actions.retry(c, i, seq_of(f)))
    route("/instance/drop", lambda c, i, f: board_actions.drop(c, i, seq_of(f)))
    route("/instance/pause", lambda c, i, f: board_actions.pause(c, i, f.get("flow") or None))
    route("/instance/resume", lambda c, i, f: board_actions.resume(c, i, f.get("flow") or None))


def save(component: str, instance_id: str, key: str, raw: str) -> str:
    """Type the new value as the current one and write it in order; what happened, in
    words (ValueError, UpdateFailedError: not saved)."""
    name = K.instance_name(component, instance_id)
    current = admin.inspect_state(name)
    try:
        if key not in current or not editable(current[key]):
            raise ValueError(f"state key {key!r} is not an editable value")
        value = parse_edit(current[key], raw)
        written = browse.write_state(name, {key: value}, EDIT_WAIT_SECONDS)
    except (ValueError, UpdateFailedError) as exc:
        raise ValueError(f"{key!r} not saved: {exc}") from exc
    if written.version is None:
        return f"{key!r} queued as update #{written.seq}; not applied yet (is a worker up?)"
    return f"{key!r} saved as update #{written.seq}: version {written.version}"
