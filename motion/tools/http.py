"""HTTP access to components: Motion's ``Application``, a FastAPI app.

Routes, for each component ``C`` (compatible with Motion's):

==========================  =========================================================
``POST /auth``              header ``X-API-Key``; body ``{instance_id, component?,
                            token_expiration_days=1}`` -> ``{"token": <JWT>}``
``POST /C``                 run a flow: ``{instance_id, flow_key, props, flush_update?}``
                            (``flow`` and Motion's older ``dataflow_key`` work too)
``POST /C/update``          ``write_state``: ``{instance_id, state_update}``
``GET /C/read``             ``read_state``: ``?instance_id=...&key=...`` -> ``{key: value}``
``POST /C/enqueue``         enqueue a flow's updates without its serve op (for producers
                            in other languages): ``{instance_id, flow, props}`` -> seq
``/C/submit`` ...            submit, failed, retry, drop, pause, resume: :mod:`.http_updates`
==========================  =========================================================

Every route but ``/auth`` needs ``Authorization: Bearer <JWT>`` for the component and
instance it names (401 without a valid token, 403 for another instance's or another
component's token); an ``X-API-Key`` header, if sent, must be right (403). Tokens are
signed with their own secret (:mod:`motion.tools.tokens`), never with the API key, and
live 1 day by default, 30 at most. No request waits longer than ``wait_timeout``. Error
bodies never carry exception text or Redis addresses: those go to the ``motion.http``
logger with an error id that the body repeats. A handle is made per request (no thread,
pooled connections). Needs the ``http`` extra. Tool: uses the caller road, the floor and
the other HTTP modules (http_errors: what a client is told; http_updates).

Example::

    from motion import Application
    app = Application([Summary], api_key="sk_...").get_app()   # uvicorn module:app
"""

import logging
import math
import secrets
from collections.abc import Sequence
from typing import Any

from motion.caller.handle import Instance
from motion.define.component import Component
from motion.floor.errors import (
    ConfigurationError,
    DefinitionError,
    MissingDependencyError,
    UnknownFlowError,
    UpdateFailedError,
    install_hint,
)
from motion.floor.inbox import WRITE_FLOW, Update
from motion.tools import http_updates
from motion.tools.http_errors import error_status, public_message
from motion.tools.tokens import DEFAULT_EXPIRY_DAYS, TokenSigner, check_secret, same_secret

INSTALL_HINT = install_hint("http")
#: the ``run_kwargs`` a client may pass on to ``run`` (anything else is a 422)
RUN_OPTIONS = frozenset({"ignore_cache", "force_refresh", "flush_update"})
#: the ``creation_kwargs`` a client may pass on to the handle: handle options such as
#: ``config_path`` or ``logging_level`` configure the server, not the instance (422)
CREATION_OPTIONS = frozenset({"init_state_params"})

log = logging.getLogger("motion.http")


def _require() -> None:
    try:
        import fastapi  # noqa: F401  (imported to check the extra is installed)
        import jwt  # noqa: F401
    except ImportError as exc:
        raise MissingDependencyError(
            f"motion's HTTP Application needs FastAPI and PyJWT ({exc.name} is missing); "
            f"install them with: {INSTALL_HINT}"
        ) from exc


def _check_wait(wait_timeout: Any) -> float:
    number = isinstance(wait_timeout, int | float) and not isinstance(wait_timeout, bool)
    if not number or not math.isfinite(wait_timeout) or wait_timeout <= 0:
        raise ConfigurationError(
            f"wait_timeout={wait_timeout!r}: give the most seconds a request may wait for "
            f"updates, a number above 0 (a request never waits forever)."
        )
    return float(wait_timeout)


class Application:
    """A FastAPI app serving ``components`` over HTTP, with API-key and per-instance JWT auth.

    Args:
        components: the components to expose (one set of routes each).
        api_key: the secret that ``POST /auth`` checks (at least 32 bytes); a random
            ``sk_...`` key when empty (see :meth:`get_credentials`).
        wait_timeout: most seconds a request waits for updates to be applied
            (``flush_update``, ``force_refresh`` and ``/update``); 504 after that.
        jwt_secret: the secret that signs tokens (at least 32 bytes, not the API key);
            default ``MOTION_JWT_SECRET``, else one generated once and kept in Redis
            so every replica agrees (see :mod:`motion.tools.tokens`).

    Raises:
        MissingDependencyError: (an ``ImportError``) without the ``http`` extra.
        ConfigurationError: (a ``ValueError``) a key or secret under 32 bytes, a token
            secret equal to the API key, or a ``wait_timeout`` that is not a number > 0.
    """

    def __init__(
        self,
        components: Sequence[Component],
        api_key: str = "",
        wait_timeout: float = 60.0,
        jwt_secret: str = "",
    ) -> None:
        _require()
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise DefinitionError(f"components must have distinct names, got {names}.")
        self.components = list(components)
        self.api_key = check_secret(api_key, "api_key") if api_key else _new_key()
        self.wait_timeout = _check_wait(wait_timeout)
        self.signer = TokenSigner(jwt_secret)
        if not self.signer.shared and same_secret(self.signer.secret(), self.api_key):
            raise ConfigurationError(
                "the token secret (jwt_secret / MOTION_JWT_SECRET) must differ from the API "
                "key: a token would otherwise expose the key to offline guessing."
            )
        self.app = _build(self)

    def get_app(self) -> Any:
        """The FastAPI app (serve it with ``uvicorn``)."""
        return self.app

    def get_credentials(self) -> dict[str, str]:
        """``{"api_key": ...}``: the key clients send to ``POST /auth``."""
        return {"api_key": self.api_key}

    def make_token(
        self,
        instance_id: str,
        expiration_days: float = DEFAULT_EXPIRY_DAYS,
        component: str | None = None,
    ) -> str:
        """A JWT for ``instance_id`` of ``component`` (default: each component of this app).

        Raises:
            ConfigurationError: ``expiration_days`` not above 0 and at most 30, or a
                component this app does not serve.
        """
        return self.signer.make(instance_id, self._scope(component), expiration_days)

    def token_instance(self, token: str) -> str | None:
        """The instance id a valid token is for, or ``None`` (bad signature, expired...)."""
        grant = self.signer.check(token)
        return None if grant is None else grant.instance_id

    def key_matches(self, key: str) -> bool:
        """Whether ``key`` is the API key (constant-time comparison)."""
        return same_secret(key, self.api_key)

    def _scope(self, component: str | None) -> list[str]:
        names = [c.name for c in self.components]
        if component is None:
            return names
        if component not in names:
            raise ConfigurationError(f"this app serves no component {component!r} ({names}).")
        return [component]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """ASGI entry point, so ``uvicorn module:application`` works too."""
        await self.app(scope, receive, send)


def _new_key() -> str:
    return "sk_" + secrets.token_urlsafe(32)


async def enqueue(component: Component, instance_id: str, update: Update) -> int:
    """Enqueue ``update`` for an instance as ``run`` would, without a serve op; returns its seq."""
    if not component.update_ops(update.flow):
        component.check_flow(update.flow)  # UnknownFlowError for an unknown flow
        raise UnknownFlowError(f"flow {update.flow!r} of {component.name} has no update op.")
    handle: Instance = component(instance_id)
    return await handle._aenqueue(update)


def write(component: Component, instance_id: str, changes: dict[str, Any], timeout: float) -> int:
    """``write_state`` with a timeout; returns the committed version."""
    handle: Instance = component(instance_id)
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
        component: str | None = None  # default: every component of this app
        token_expiration_days: float = DEFAULT_EXPIRY_DAYS

    class RunRequest(BaseModel):
        instance_id: str
        flow: str | None = None
        flow_key: str | None = None  # Motion 0.1.132's name for the flow
        dataflow_key: str | None = None  # older Motion's name
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

    def check_token(request: Request, component: str, instance_id: str) -> None:
        check_key(request, required=False)
        header = request.headers.get("Authorization", "")
        if not header.startswith("Bearer "):
            raise HTTPException(401, "send 'Authorization: Bearer <token>' (from POST /auth)")
        try:
            grant = application.signer.check(header[len("Bearer ") :])
        except Exception as exc:  # the shared secret could not be read
            raise failure(exc) from exc
        if grant is None:
            raise HTTPException(401, "invalid or expired token; get a new one from POST /auth")
        if not grant.allows(component, instance_id):
            raise HTTPException(
                403, f"this token is not for instance {instance_id!r} of {component}"
            )

    def failure(exc: Exception) -> HTTPException:
        status = error_status(exc)
        error_id = secrets.token_hex(6)
        if status >= 500 or isinstance(exc, UpdateFailedError):
            log.error("HTTP %d, error id %s", status, error_id, exc_info=exc)
        message = public_message(exc, application.wait_timeout) or "internal error"
        return HTTPException(
            status,
            f"{message} (error id {error_id}: the server log has the details)",
            headers={"X-Error-Id": error_id},
        )

    def encoded(value: Any) -> Any:
        try:
            return jsonable_encoder(value)
        except Exception as exc:
            raise failure(exc) from exc

    def flow_of(body: RunRequest) -> str:
        named = {v for v in (body.flow, body.flow_key, body.dataflow_key) if v is not None}
        if len(named) > 1:
            raise HTTPException(422, f"the request names several flows: {sorted(named)}")
        if not named:
            raise HTTPException(422, "name the flow to run as 'flow_key' (or 'flow')")
        return named.pop()

    @app.post("/auth")
    async def auth(body: AuthRequest, request: Request) -> dict[str, str]:
        check_key(request, required=True)
        try:
            token = application.make_token(
                body.instance_id, body.token_expiration_days, body.component
            )
        except ConfigurationError as exc:
            raise HTTPException(422, str(exc)) from exc
        except Exception as exc:
            raise failure(exc) from exc
        return {"token": token}

    def add_routes(component: Component) -> None:
        name = component.name

        @app.post(f"/{name}", name=f"{name}.run")
        async def run(body: RunRequest, request: Request) -> Any:
            check_token(request, name, body.instance_id)
            flow = flow_of(body)
            for field, given, valid in (
                ("run_kwargs", body.run_kwargs, RUN_OPTIONS),
                ("creation_kwargs", body.creation_kwargs, CREATION_OPTIONS),
            ):
                unknown = sorted(set(given) - valid)
                if unknown:
                    raise HTTPException(
                        422, f"{field} may not hold {unknown}; valid: {sorted(valid)}"
                    )
            options = {
                "ignore_cache": body.ignore_cache,
                "force_refresh": body.force_refresh,
                "flush_update": body.flush_update,
                **body.run_kwargs,
            }
            flush = bool(options.pop("flush_update", False))
            refresh = bool(options.pop("force_refresh", False))
            timeout = application.wait_timeout
            try:
                handle = component(body.instance_id, **body.creation_kwargs)
                if refresh:  # wait (bounded) for every pending update, then serve fresh
                    await handle.aflush_update(timeout=timeout)
                    options["ignore_cache"] = True
                result = await handle.arun(flow, body.props, **options)
                if flush:
                    await handle.aflush_update(flow, timeout=timeout)
            except Exception as exc:
                raise failure(exc) from exc
            return encoded(result)

        @app.post(f"/{name}/update", name=f"{name}.write_state")
        def write_state(body: UpdateStateRequest, request: Request) -> dict[str, Any]:
            check_token(request, name, body.instance_id)
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
            check_token(request, name, instance_id)
            try:
                value = component(instance_id).read_state(key)
            except Exception as exc:
                raise failure(exc) from exc
            return {key: encoded(value)}

        @app.post(f"/{name}/enqueue", name=f"{name}.enqueue")
        async def enqueue_updates(body: EnqueueRequest, request: Request) -> dict[str, Any]:
            check_token(request, name, body.instance_id)
            update = Update(body.flow, dict(body.props), body.serve_result)
            try:
                seq = await enqueue(component, body.instance_id, update)
            except Exception as exc:
                raise failure(exc) from exc
            return {"instance_id": body.instance_id, "flow": body.flow, "seq": seq}

    for component in application.components:
        add_routes(component)
        http_updates.add_routes(app, component, check_token, failure)  # submit, dead letters...
    return app
