"""Who may use the dashboard: the loopback rule, operator sign-in, sessions, CSRF tokens.

- no ``MOTION_DASHBOARD_KEY``: the dashboard is open, but only on a loopback
  address and to a loopback ``Host`` (against DNS rebinding); elsewhere, 403;
- with the key (32+ bytes): an operator signs in with it and gets a signed session
  cookie (``nonce.kind.issued.mac``, HMAC-SHA256 under a key derived from the
  dashboard key, 12 hours), so changing the key ends every session;
- every write form carries a CSRF token bound to the session (the cookie is also
  ``SameSite=Strict``), checked on every POST.

- :class:`Board`: the request plumbing every route uses (who is asking, pages with
  the security headers, forms checked for their CSRF token).

Tool; uses the floor (errors) and tools (board_html, tokens).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import os
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from motion.floor.errors import ConfigurationError
from motion.tools import board_html as H
from motion.tools.tokens import check_secret, same_secret

SESSION_SECONDS = 12 * 3600
COOKIE = "motion_dashboard"
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or address, without port) is this machine only."""
    host = host.strip("[]").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def env_key() -> str:
    """``MOTION_DASHBOARD_KEY`` (``""`` when unset)."""
    return os.environ.get("MOTION_DASHBOARD_KEY", "")


@dataclass
class Session:
    """Who is looking: a session nonce (for CSRF) and whether the cookie is new."""

    nonce: str
    operator: bool
    new: bool = False


class Access:
    """Sign-in, sessions and CSRF tokens of one dashboard app.

    Args:
        key: the dashboard key; ``None`` reads ``MOTION_DASHBOARD_KEY`` on each request
            (``""``: no key, loopback only).
    """

    def __init__(self, key: str | None) -> None:
        if key:
            check_secret(key, "the dashboard key")
        self._key = key
        self._open_secret = secrets.token_bytes(32)  # signs sessions while no key is set

    def key(self) -> str:
        """The key in force (``""`` for none); a configured one shorter than 32 bytes raises."""
        key = env_key() if self._key is None else self._key
        return check_secret(key, "MOTION_DASHBOARD_KEY") if key else ""

    def _secret(self, key: str) -> bytes:
        if not key:
            return self._open_secret
        return hmac.new(key.encode(), b"motion-dashboard-session", hashlib.sha256).digest()

    def _sign(self, key: str, text: str) -> str:
        return hmac.new(self._secret(key), text.encode(), hashlib.sha256).hexdigest()

    def cookie(self, session: Session) -> str:
        """The cookie value for ``session``: ``nonce.kind.issued.mac``."""
        key = self.key()
        body = f"{session.nonce}.{'op' if session.operator else 'open'}.{int(time.time())}"
        return f"{body}.{self._sign(key, body)}"

    def session(self, raw: str | None) -> Session | None:
        """The session a cookie proves, or ``None`` (forged, expired, or for another key)."""
        if not raw or raw.count(".") != 3:
            return None
        key = self.key()
        body, _, mac = raw.rpartition(".")
        if not hmac.compare_digest(mac, self._sign(key, body)):
            return None
        nonce, kind, issued = body.split(".")
        if not issued.isdigit() or time.time() - int(issued) > SESSION_SECONDS:
            return None
        if key and kind != "op":
            return None
        return Session(nonce, operator=kind == "op")

    def csrf(self, session: Session) -> str:
        """The CSRF token every write form of ``session`` carries."""
        return self._sign(self.key(), f"csrf.{session.nonce}")

    def csrf_ok(self, session: Session, token: str) -> bool:
        """Whether ``token`` is ``session``'s CSRF token."""
        return hmac.compare_digest(token.encode(), self.csrf(session).encode())

    def key_ok(self, given: str) -> bool:
        """Whether ``given`` is the dashboard key (constant time)."""
        key = self.key()
        return bool(key) and same_secret(given, key)


def request_is_local(scope: Mapping[str, Any], host_header: str) -> bool:
    """Whether a request reached a loopback-bound server, addressed to a loopback name.

    The server address is the listening socket's (not a header), so it cannot be
    forged; Starlette's in-process test transport counts as local (no network).
    """
    server, client = scope.get("server"), scope.get("client")
    in_process = bool(server and server[0] == "testserver" and client and client[0] == "testclient")
    if in_process:
        bound = True
    elif not server or server[0] is None:
        return False
    else:
        bound = str(server[0]).startswith("/") or is_loopback(str(server[0]))  # or a unix socket
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return bound and (is_loopback(name) or (in_process and name == "testserver"))


def _env_read_only() -> bool:
    return os.environ.get("MOTION_DASHBOARD_READ_ONLY", "").strip().lower() in ("1", "true", "yes")


class Refused(Exception):
    """Ends a request early with ``response`` (a sign-in redirect, a 403 page)."""

    def __init__(self, response: Any) -> None:
        self.response = response


class Board:
    """One dashboard app's request plumbing: who is asking, pages, forms (the routes of
    :mod:`motion.tools.board_routes` use it)."""

    def __init__(self, key: str | None, read_only: bool | None) -> None:
        self.access = Access(key)
        self._read_only = read_only

    def no_edits(self) -> bool:
        """Whether the dashboard is read-only now (option, else the environment)."""
        return _env_read_only() if self._read_only is None else self._read_only

    def keep(self, response: Any, session: Session) -> Any:
        """Set ``session``'s cookie on ``response`` (signed, HttpOnly, SameSite=Strict)."""
        response.set_cookie(
            COOKIE, self.access.cookie(session), max_age=SESSION_SECONDS, httponly=True,
            samesite="strict", path="/",
            secure=os.environ.get("MOTION_DASHBOARD_SECURE_COOKIE", "") == "1",
        )  # fmt: skip
        return response

    def html(self, body: str, status: int = 200, session: Session | None = None) -> Any:
        """An HTML response with the dashboard's security headers."""
        from fastapi.responses import HTMLResponse

        response = HTMLResponse(body, status, headers=HEADERS)
        return self.keep(response, session) if session is not None and session.new else response

    def enter(self, request: Any) -> Session:
        """The request's session, or :class:`Refused` (not local, not signed in)."""
        from fastapi.responses import RedirectResponse

        try:
            key = self.access.key()
        except ConfigurationError as exc:
            raise Refused(
                self.html(H.page("misconfigured", H.notice(str(exc), True)), 500)
            ) from exc
        session = self.access.session(request.cookies.get(COOKIE))
        if not key:
            if not request_is_local(request.scope, request.headers.get("host", "")):
                message = (
                    "This dashboard has no MOTION_DASHBOARD_KEY, so it answers only on a "
                    "loopback address (127.0.0.1, ::1) addressed as localhost. Set the key to "
                    "serve it elsewhere."
                )
                raise Refused(self.html(H.page("refused", H.notice(message, True)), 403))
            return session or Session(secrets.token_hex(16), operator=False, new=True)
        if session is None:
            raise Refused(RedirectResponse("/login", 303, headers=HEADERS))
        return session

    def render(
        self, session: Session, title: str, body: str, status: int = 200, reload: int = 0
    ) -> Any:
        """A whole page for ``session`` (its CSRF token in the sign-out form)."""
        csrf = self.access.csrf(session)
        page = H.page(title, body, csrf=csrf, signed_in=session.operator, reload=reload)
        return self.html(page, status, session)

    async def form(self, request: Any, session: Session | None) -> dict[str, str]:
        """The POSTed form fields; :class:`Refused` unless its CSRF token is right."""
        raw = (await request.body()).decode(errors="replace")
        fields = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
        if session is None or not self.access.csrf_ok(session, fields.get("csrf", "")):
            message = "This form is stale or was not sent from this dashboard; reload and retry."
            raise Refused(self.html(H.page("refused", H.notice(message, True)), 403))
        return fields
