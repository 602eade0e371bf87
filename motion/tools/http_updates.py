"""HTTP routes on one instance's updates: submit, dead letters, pauses.

Added by :mod:`motion.tools.http` for each component ``C``, with the same auth (a
token for the component and instance the request names):

============================  =======================================================
``POST /C/submit``            ``{instance_id, flow, props, delay?, at?}``: enqueue the
                              flow's update ops without serving -> ``{ticket, seq}``
                              (``ticket``: the string ``Ticket.parse`` reads)
``GET /C/failed``             ``?instance_id=...`` -> ``{instance_id, dropped, failed:
                              [{seq, flow, op, error_type, failed_at, props}]}``
``POST /C/retry``             ``{instance_id, seq}``: re-enqueue that dead letter ->
                              ``{seq, new_seq, ticket}``
``POST /C/drop``              ``{instance_id, seq}``: remove that dead letter
``POST /C/pause``, ``/resume``  ``{instance_id, flow?}``: hold / release updates (of one
                              flow, or all) -> ``{instance_id, flow, changed}``
============================  =======================================================

A dead letter's error message and traceback are op output, which may hold anything:
they stay on the server side (``motion failed``); a client sees the error's type.
Errors are JSON (``{"detail": ...}``): 404 for an unknown flow or a seq that is not a
dead letter, 409 for one that cannot be retried, 422 for a bad schedule.

Tool; uses the caller road (handle, letters, ticket), the floor (errors). (No
``from __future__ import annotations``: FastAPI reads the routes' annotations.)
"""

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from motion.floor.errors import (
    DeadLetterNotFoundError,
    InvalidScheduleError,
    NotRetryableError,
    UnknownFlowError,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

    from motion.caller.handle import Instance
    from motion.define.component import Component

#: errors about the request itself: their status, and their message is the answer
_STATUS: tuple[tuple[type[Exception], int], ...] = (
    (DeadLetterNotFoundError, 404),
    (UnknownFlowError, 404),
    (NotRetryableError, 409),
    (InvalidScheduleError, 422),
)


def add_routes(
    app: "FastAPI",
    component: "Component",
    check_token: Callable[[Any, str, str], None],
    failure: Callable[[Exception], Exception],
) -> None:
    """Add the routes of ``component`` to FastAPI ``app`` (``check_token`` and
    ``failure`` are the app's: auth, and the error a client may see)."""
    from fastapi import HTTPException, Request
    from pydantic import BaseModel

    class SubmitRequest(BaseModel):
        instance_id: str
        flow: str
        props: dict[str, Any] = {}
        delay: float | None = None
        at: datetime | None = None

    class SeqRequest(BaseModel):
        instance_id: str
        seq: int

    class HoldRequest(BaseModel):
        instance_id: str
        flow: str | None = None

    name = component.name

    def call(request: Request, instance_id: str, action: Callable[["Instance"], Any]) -> Any:
        check_token(request, name, instance_id)
        try:
            return action(component(instance_id))
        except Exception as exc:
            for kind, status in _STATUS:
                if isinstance(exc, kind):
                    raise HTTPException(status, str(exc)) from exc
            raise failure(exc) from exc

    @app.post(f"/{name}/submit", name=f"{name}.submit")
    def submit(body: SubmitRequest, request: Request) -> dict[str, Any]:
        ticket = call(
            request,
            body.instance_id,
            lambda h: h.submit(body.flow, dict(body.props), delay=body.delay, at=body.at),
        )
        out = {"instance_id": body.instance_id, "flow": body.flow, "seq": ticket.seq}
        return {**out, "ticket": str(ticket)}

    @app.get(f"/{name}/failed", name=f"{name}.failed")
    def failed(instance_id: str, request: Request) -> dict[str, Any]:
        letters = call(request, instance_id, lambda h: h.failed_updates())
        fields = ("seq", "flow", "op", "error_type", "failed_at", "props")
        shown = [{key: x.as_dict()[key] for key in fields} for x in letters]
        return {"instance_id": instance_id, "dropped": letters.dropped, "failed": shown}

    @app.post(f"/{name}/retry", name=f"{name}.retry")
    def retry(body: SeqRequest, request: Request) -> dict[str, Any]:
        ticket = call(request, body.instance_id, lambda h: h.retry(body.seq))
        out = {"instance_id": body.instance_id, "seq": body.seq, "new_seq": ticket.seq}
        return {**out, "ticket": str(ticket)}

    @app.post(f"/{name}/drop", name=f"{name}.drop")
    def drop(body: SeqRequest, request: Request) -> dict[str, Any]:
        call(request, body.instance_id, lambda h: h.drop(body.seq))
        return {"instance_id": body.instance_id, "dropped": body.seq}

    @app.post(f"/{name}/pause", name=f"{name}.pause")
    def pause(body: HoldRequest, request: Request) -> dict[str, Any]:
        changed = call(request, body.instance_id, lambda h: h.pause(body.flow))
        return {"instance_id": body.instance_id, "flow": body.flow, "changed": changed}

    @app.post(f"/{name}/resume", name=f"{name}.resume")
    def resume(body: HoldRequest, request: Request) -> dict[str, Any]:
        changed = call(request, body.instance_id, lambda h: h.resume(body.flow))
        return {"instance_id": body.instance_id, "flow": body.flow, "changed": changed}
