"""The retry budget of motion's Redis calls: a failing call gives up in bounded time.

redis-py retries a failed command (and, inside it, a failed reconnect) through a
``Retry`` object. Motion's clients use :class:`BudgetRetry` (and its asyncio twin):
at most :data:`RETRIES` retries, and a new try starts only if it can end (one
``attempt`` of at most a socket or connect timeout) before the call's deadline,
``MOTION_REDIS_RETRY_SECONDS`` after its first try began. The first try always runs,
so a call fails within ``max(retry seconds, one attempt)``: 20 s with the defaults.
Nested retries (a reconnect inside a command's retry, a pooled client's retry after a
per-thread fast connection failed) share the outermost call's deadline, so retries
never multiply.

Layer: floor (imports only redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import redis.asyncio.retry
import redis.retry
from redis.backoff import ExponentialBackoff

T = TypeVar("T")

#: retries of a failing call, at most (fewer when the deadline comes first)
RETRIES = 3

_sync_deadline = threading.local()
_async_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "motion_redis_deadline", default=None
)


def _backoff() -> ExponentialBackoff:
    return ExponentialBackoff(cap=1.0, base=0.05)


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[float]:
    """This thread's deadline for the Redis call being made (the outer one's, if any)."""
    outer: float | None = getattr(_sync_deadline, "at", None)
    if outer is not None:
        yield outer
        return
    _sync_deadline.at = time.monotonic() + seconds
    try:
        yield _sync_deadline.at
    finally:
        _sync_deadline.at = None


def room_for(at: float, attempt: float, delay: float = 0.0) -> bool:
    """Whether a try of ``attempt`` seconds after ``delay`` still ends before ``at``."""
    return time.monotonic() + delay + attempt <= at


class BudgetRetry(redis.retry.Retry):
    """redis-py's retry with a deadline: see the module docstring."""

    def __init__(self, seconds: float, attempt: float) -> None:
        super().__init__(_backoff(), RETRIES)
        self.seconds = seconds
        self.attempt = attempt

    def call_with_retry(
        self,
        do: Callable[[], T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Run ``do``, retrying its connection errors within the budget."""
        with deadline(self.seconds) as at:
            self._backoff.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py
            failures = 0
            while True:
                try:
                    return do()
                except self._supported_errors as error:
                    if is_retryable and not is_retryable(error):
                        raise
                    failures += 1
                    fail(error, failures) if with_failure_count else fail(error)
                    delay = self._backoff.compute(failures)
                    if failures > self._retries or not room_for(at, self.attempt, delay):
                        raise error
                    time.sleep(delay)


class AsyncBudgetRetry(redis.asyncio.retry.Retry):
    """The asyncio twin of :class:`BudgetRetry` (the deadline is per task)."""

    def __init__(self, seconds: float, attempt: float) -> None:
        super().__init__(_backoff(), RETRIES)
        self.seconds = seconds
        self.attempt = attempt

    async def call_with_retry(
        self,
        do: Callable[[], Awaitable[T]],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> T:
        """Await ``do``, retrying its connection errors within the budget."""
        at = _async_deadline.get()
        token = None
        if at is None:
            at = time.monotonic() + self.seconds
            token = _async_deadline.set(at)
        try:
            self._backoff.reset()  # type: ignore[no-untyped-call]  # untyped in redis-py
            failures = 0
            while True:
                try:
                    return await do()
                except self._supported_errors as error:
                    if is_retryable and not is_retryable(error):
                        raise
                    failures += 1
                    if with_failure_count:
                        await fail(error, failures)
                    else:
                        await fail(error)
                    delay = self._backoff.compute(failures)
                    if failures > self._retries or not room_for(at, self.attempt, delay):
                        raise error
                    await asyncio.sleep(delay)
        finally:
            if token is not None:
                _async_deadline.reset(token)
