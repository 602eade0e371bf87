"""What an HTTP client is told about an error: its status, and the words it may see.

Only errors about the request itself are echoed (an unknown flow, a bad instance id,
which updates failed, a timeout); exception text from ops, Redis addresses and
tracebacks stay in the server log (:mod:`motion.tools.http` logs them with an error id).

Tool; uses the floor (errors).
"""

from motion.floor.errors import (
    ConnectionFailedError,
    FlushTimeoutError,
    InvalidInstanceIdError,
    UnknownFlowError,
    UpdateFailedError,
)


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


def public_message(exc: BaseException, wait_timeout: float) -> str | None:
    """What a client may be told about ``exc`` (``None``: only a generic message).

    Only errors about the request itself are echoed; exception text from ops,
    Redis addresses and tracebacks stay in the server log.
    """
    if isinstance(exc, (UnknownFlowError, InvalidInstanceIdError)):
        return str(exc)
    if isinstance(exc, UpdateFailedError):
        failed = ", ".join(f"#{f.seq} (flow {f.flow!r}, {f.error_type})" for f in exc.failures)
        return f"{len(exc.failures)} update(s) failed: {failed}"
    if isinstance(exc, FlushTimeoutError):
        return (
            f"the updates were not applied within {wait_timeout:g}s; they stay queued and are "
            f"applied once a worker takes them"
        )
    if isinstance(exc, ConnectionFailedError):
        return "the state store is unreachable; try again later"
    return None
