"""HTTP access to components: Motion's ``Application``, a FastAPI app.

Routes, for each component ``C`` (compatible with Motion's):

==========================  =========================================================
``POST /auth``              header ``X-API-Key``; body ``{instance_id,
                            token_expiration_days=1}`` -> ``{"token": <JWT>}``
``POST /C``                 run a flow: ``{instance_id, flow, props, flush_update?}``
``POST /C/update``          ``write_state``: ``{instance_id, state_update}``
``GET /C/read``             ``read_state``: ``?instance_id=...&key=...`` -> ``{key: value}``
``POST /C/enqueue``         enqueue a flow's updates without its serve op (for producers
                            in other languages): ``{instance_id, flow, props}`` -> seq
==========================  =========================================================

Every route but ``/auth`` needs ``Authorization: Bearer <JWT>`` for the instance
it names (401 without a valid token, 403 for another instance's token); an
``X-API-Key`` header, if sent, must be right (403). A handle is made per request:
it costs nothing (no thread, pooled connections). Needs the ``http`` extra.

Example::

    from motion import Application
    app = Application([Summary], api_key="sk_...").get_app()   # uvicorn module:app
"""

import secrets
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from motion.component import Component
from motion.errors import (
    ConnectionFailedError,
    DefinitionError,
    FlushTimeoutError,
    InvalidInstanceIdError,
    MissingDependencyError,
    MotionError,
    UnknownFlowError,
)
from motion.inbox import WRITE_FLOW, Update

INSTALL_HINT = "pip install 'motion-celery[http]'"


def _require() -> None:
    try:
        import fastapi  # noqa: F401  (imported to check the extra is installed)
        import jwt  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"motion's HTTP Application needs FastAPI and PyJWT ({exc.name} is missing); "
            f"install them with: {INSTALL_HINT}"
        ) from exc


class Application:
    """A FastAPI app serving ``components`` over HTTP, with API-key and per-instance JWT auth.

    Args:
        components: the components to expose (one set of routes each).
        api_key: the secret that ``POST /auth`` checks and that signs the tokens;
            a random ``sk_...`` key when empty (see :meth:`get_credentials`).
        wait_timeout: most seconds a request waits for updates to be applied
            (``flush_update`` and ``/update``); 504 after that.

    Raises:
        MissingDependencyError: (an ``ImportError``) without the ``http`` extra.
    """

    def __init__(
        self,
        components: Sequence[Component],
        api_key: str = "",
        wait_timeout: float | None = 60.0,
    ) -> None:
        _require()
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise DefinitionError(f"components must have distinct names, got {names}.")
        self.components = list(components)
        self.api_key = api_key or "sk_" + secrets.token_urlsafe(32)
        self.wait_timeout = wait_timeout
        self.app = _build(self)

    def get_app(self) -> Any:
        """The FastAPI app (serve it with ``uvicorn``)."""
        return self.app

    def get_credentials(self) -> dict[str, str]:
        """``{"api_key": ...}``: the key clients send to ``POST /auth``."""
        return {"api_key": self.api_key}

    def make_token(self, instance_id: str, expiration_days: float = 1) -> str:
        """A JWT (HS256, signed with the API key) for ``instance_id``."""
        import jwt

        expires = datetime.now(timezone.utc) + timedelta(days=expiration_days)
        return str(jwt.encode({"instance_id": instance_id, "exp": expires}, self.api_key, "HS256"))

    def token_instance(self, token: str) -> str | None:
        """The instance id a valid token is for, or ``None`` (bad signature, expired...)."""
        import jwt

        try:
            claims = jwt.decode(token, self.api_key, algorithms=["HS256"])
        except jwt.InvalidTokenError:
            return None
        instance_id = claims.get("instance_id")
        return instance_id if isinstance(instance_id, str) else None

    def key_matches(self, key: str) -> bool:
        """Whether ``key`` is the API key (constant-time comparison)."""
        return secrets.compare_digest(key.encode(), self.api_key.encode())

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point, so ``uvicorn module:application`` works too."""
        await self.app(scope, receive, send)


def error_status(exc: BaseException) -> int:
    """The HTTP status for an error raised while serving a request."""
    if isinstance(exc, UnknownFlowError):
        return 404
    if isinstance(exc, InvalidInstanceIdError):
        return 422
    if isinstance(exc, FlushTimeoutError):
        return 504
    if isinstance(exc, ConnectionFailedError):
        return 503
    return 500


async def enqueue(component: Component, instance_id: str, update: Update) -> int:
    """Enqueue ``update`` for an instance as ``run`` would, without a serve op; returns its seq."""
    if not component.update_ops(update.flow):
        component.check_flow(update.flow)  # UnknownFlowError for an unknown flow
        raise UnknownFlowError(f"flow {update.flow!r} of {component.name} has no update op.")
    handle = component(instance_id)
    return await handle._aenqueue(update)


def write(
    component: Component, instance_id: str, changes: dict[str, Any], timeout: float | None
) -> int:
    """``write_state`` with a timeout; returns the committed version."""
    handle = component(instance_id)
    if changes:
        seq = handle._enqueue(Update(WRITE_FLOW, dict(changes)))
        handle._wait(WRITE_FLOW, seq, timeout)
    return handle.get_version()


def _build(application: Application) -> Any:
    """Create the FastAPI app and its routes (FastAPI is imported only here)."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.encoders import jsonable_encoder
    from pydantic import BaseModel

    class AuthRequest(BaseModel):
        instance_id: str
        token_expiration_days: float = 1

    class RunRequest(BaseModel):
        instance_id: str
        flow: str | None = None
        dataflow_key: str | None = None  # Motion's name for the flow
        props: dict[str, Any] = {}
        flush_update: bool = False
        ignore_cache: bool = False
        force_refresh: bool = False
        is_async: bool = False  # accepted for Motion clients; async ops are detected
        run_kwargs: dict[str, Any] = {}
        creation_kwargs: dict[str, Any] = {}

    class UpdateStateRequest(BaseModel):
        instance_id: str
        state_update: dict[str, Any]
        kwargs: dict[str, Any] = {}

    class EnqueueRequest(BaseModel):
        instance_id: str
        flow: str
        props: dict[str, Any] = {}
        serve_result: Any = None

    app = FastAPI(title="motion", description="Components served by motion.")

    def check_key(request: Request, required: bool) -> None:
        key = request.headers.get("X-API-Key")
        if key is None:
            if required:
                raise HTTPException(401, "send the API key in the X-API-Key header")
            return
        if not application.key_matches(key):
            raise HTTPException(403, "wrong API key")

    def check_token(request: Request, instance_id: str) -> None:
        check_key(request, required=False)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise HTTPException(401, "send 'Authorization: Bearer <token>' (from POST /auth)")
        owner = application.token_instance(header[len("Bearer ") :])
        if owner is None:
            raise HTTPException(401, "invalid or expired token; get a new one from POST /auth")
        if owner != instance_id:
            raise HTTPException(403, f"this token is not for instance {instance_id!r}")

    def failure(exc: Exception) -> HTTPException:
        detail = str(exc) if isinstance(exc, MotionError) else f"{type(exc).__name__}: {exc}"
        return HTTPException(error_status(exc), detail)

    def encoded(value: Any) -> Any:
        try:
            return jsonable_encoder(value)
        except Exception as exc:
            raise HTTPException(500, f"result is not JSON-serializable: {exc}") from exc

    @app.post("/auth")
    async def auth(body: AuthRequest, request: Request) -> dict[str, str]:
        check_key(request, required=True)
        return {"token": application.make_token(body.instance_id, body.token_expiration_days)}

    def add_routes(component: Component) -> None:
        name = component.name

        @app.post(f"/{name}", name=f"{name}.run")
        async def run(body: RunRequest, request: Request) -> Any:
            check_token(request, body.instance_id)
            flow = body.flow or body.dataflow_key
            if not flow:
                raise HTTPException(422, "give the flow to run as 'flow'")
            options = {
                "ignore_cache": body.ignore_cache,
                "force_refresh": body.force_refresh,
                "flush_update": body.flush_update,
                **body.run_kwargs,
            }
            flush = bool(options.pop("flush_update", False))
            try:
                handle = component(body.instance_id, **body.creation_kwargs)
                result = await handle.arun(flow, body.props, **options)
                if flush:
                    await handle.aflush_update(flow, timeout=application.wait_timeout)
            except Exception as exc:
                raise failure(exc) from exc
            return encoded(result)

        @app.post(f"/{name}/update", name=f"{name}.write_state")
        def write_state(body: UpdateStateRequest, request: Request) -> dict[str, Any]:
            check_token(request, body.instance_id)
            try:
                version = write(
                    component, body.instance_id, body.state_update, application.wait_timeout
                )
            except Exception as exc:
                raise failure(exc) from exc
            return {
                "message": f"Successfully updated {name} state for {body.instance_id}",
                "version": version,
            }

        @app.get(f"/{name}/read", name=f"{name}.read_state")
        def read_state(instance_id: str, key: str, request: Request) -> Any:
            check_token(request, instance_id)
            try:
                value = component(instance_id).read_state(key)
            except Exception as exc:
                raise failure(exc) from exc
            return {key: encoded(value)}

        @app.post(f"/{name}/enqueue", name=f"{name}.enqueue")
        async def enqueue_updates(body: EnqueueRequest, request: Request) -> dict[str, Any]:
            check_token(request, body.instance_id)
            update = Update(body.flow, dict(body.props), body.serve_result)
            try:
                seq = await enqueue(component, body.instance_id, update)
            except Exception as exc:
                raise failure(exc) from exc
            return {"instance_id": body.instance_id, "flow": body.flow, "seq": seq}

    for component in application.components:
        add_routes(component)
    return app
