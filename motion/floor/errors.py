"""The one error tree of motion.

Every error motion raises derives from :class:`MotionError`. Where Motion users
already catch a built-in type (``KeyError`` for an unknown flow, ``ValueError``
for a bad definition, ``TypeError`` for a bad argument), the motion error
subclasses that type too, so existing ``except`` clauses keep working.

Floor; uses no other motion module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


class MotionError(Exception):
    """Base class of every error motion raises."""


class ConfigurationError(MotionError, ValueError):
    """A setting (environment variable, Redis URL, option) is missing or wrong."""


class DefinitionError(MotionError, ValueError):
    """A component, flow or op is defined wrongly; raised at definition time."""


class CommandLineError(MotionError, ValueError):
    """A ``motion`` command names a file, module or component that is not there."""


class InvalidInstanceIdError(MotionError, ValueError):
    """An instance id (or ``Component__id`` name) is malformed."""


class InstanceNotFoundError(MotionError, ValueError):
    """An admin call named an instance that does not exist in Redis."""


class MissingDependencyError(MotionError, ImportError):
    """An optional extra is not installed; the message names the pip command."""


def install_hint(extra: str) -> str:
    """The command that installs the optional ``extra``: motion is installed from its
    clone (no package registry serves it), as the README's set-up does."""
    return f"pip install -e '.[{extra}]' (in the motion clone)"


class UnknownFlowError(MotionError, KeyError):
    """``run`` or ``flush_update`` named a flow the component does not define."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnknownComponentError(MotionError, KeyError):
    """A worker received work for a component whose code it has not imported, or a
    producer named a component no worker ever registered in this Redis."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnknownOptionError(MotionError, TypeError):
    """A handle was given a keyword no version of Motion or motion knows."""


class SerializationError(MotionError, TypeError):
    """A value (props, serve result, state) cannot be serialized or deserialized."""


class PayloadError(MotionError):
    """An inbox payload is corrupt, truncated, or fails its signature check."""


class StateTooLargeError(MotionError, ValueError):
    """A state value is larger than the configured ``MOTION_MAX_VALUE_BYTES``."""


class UpdateResultError(MotionError, TypeError):
    """An update op returned something other than a dict or ``None``."""


class MigrateResultError(UpdateResultError, AssertionError):
    """A ``StateMigrator`` migrate function returned something other than a dict.

    An ``AssertionError`` too, as Motion asserted the result was a dict.
    """


class ConnectionFailedError(MotionError, ConnectionError):
    """Redis could not be reached or refused the credentials."""


class RedisFullError(MotionError, MemoryError):
    """Redis is at ``maxmemory`` and refused an enqueue; retry once workers drained the backlog."""


class ReplicationTimeoutError(MotionError, TimeoutError):
    """With ``MOTION_REDIS_MIN_REPLICAS``, fewer replicas than asked confirmed a write in
    time: it is on the primary and may or may not survive a failover. A retry with the
    same enqueue token is deduplicated: an enqueue's error carries its key in
    ``dedup_key`` (the one given, or the random one the call made), so
    ``handle.submit(flow, props, dedup_key=err.dedup_key)`` enqueues it once."""

    #: the enqueue's dedup key, to retry with (``None`` for a commit's wait)
    dedup_key: str | None = None
    #: the script's own reply (what the write did on the primary; motion's use)
    reply: Any = None


class FlushTimeoutError(MotionError, TimeoutError):
    """``flush_update`` waited longer than its timeout."""


class NoWorkerError(FlushTimeoutError):
    """A wait with no timeout gave up: no worker able to apply the component's updates
    has been seen for ``MOTION_WORKER_GRACE_SECONDS``; the message names the fix."""


class InstanceClearedError(MotionError, RuntimeError):
    """The instance was cleared (or lost by Redis) before an awaited update was applied:
    the update belonged to that incarnation and is never applied to a later one."""


class InstanceClosedError(MotionError, RuntimeError):
    """An instance handle was used after ``close()``."""


class InvalidTicketError(MotionError, ValueError):
    """A ticket string (``str(ticket)``) is malformed, or a ticket names another instance."""


class InvalidScheduleError(MotionError, ValueError):
    """``submit(delay=, at=)`` was given both, a negative delay, or one too far ahead."""


class DeadLetterNotFoundError(MotionError, KeyError):
    """``retry``/``drop`` named a seq that is not a dead letter of the instance (never
    failed, already dropped or retried, or beyond the 1,000 kept)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NotRetryableError(MotionError, ValueError):
    """A dead letter cannot be re-enqueued: its payload was not kept (recorded before
    payloads were, or unreadable); drop it and enqueue the update again."""


class TableError(MotionError):
    """Base class of the errors of :class:`~motion.define.table.MTable` (the ``table`` extra)."""


class TableConstructionError(TableError, NotImplementedError):
    """``MTable(...)`` was called; use ``from_pandas``, ``from_arrow`` or ``from_schema``."""


class ColumnNotFoundError(TableError, KeyError):
    """A table call named a column the table does not have, or a row lacks one."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ColumnError(TableError, ValueError):
    """A column cannot be added: its name is taken, or its length or type does not fit."""


class TableTypeError(TableError, TypeError):
    """A value does not fit: a row's value vs its column, or data that is not a ``pa.Table``."""


class TableIndexError(TableError, IndexError):
    """A row or column index is out of range."""


class VectorSearchError(TableError, ValueError):
    """``knn``/``apply_distance`` cannot search: bad metric, ``k``, query or vector column."""


class UpdatesDisabledError(MotionError, RuntimeError):
    """A handle made with ``disable_update_task=True`` was asked to enqueue an update."""


@dataclass(frozen=True)
class FailedUpdate:
    """One update that failed: which instance, which position, which op, and why."""

    instance_name: str
    seq: int
    flow: str
    op: str
    error_type: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.instance_name} update #{self.seq} (flow {self.flow!r}, op {self.op!r}): "
            f"{self.error_type}: {self.message}"
        )


class DrainFailedError(MotionError, RuntimeError):
    """A wake-up task's drain recorded failed updates (raised after they were committed,
    so the task shows as failed in Flower; nothing is retried or re-delivered)."""


class UpdateFailedError(MotionError, RuntimeError):
    """One or more updates failed; ``failures`` lists each :class:`FailedUpdate`.

    A ``RuntimeError`` too: Motion raised ``RuntimeError`` from
    ``run(..., flush_update=True)`` when the update failed.
    """

    def __init__(self, failures: Sequence[FailedUpdate]) -> None:
        self.failures = list(failures)
        lines = "\n".join(f"  - {f}" for f in self.failures)
        super().__init__(f"{len(self.failures)} update(s) failed:\n{lines}")


class FlowPausedError(MotionError, RuntimeError):
    """A wait reached an update held by a pause: its flow (or the whole instance) is
    paused by ``handle.pause`` or stopped at a failed update (``on_failure="pause"``).
    ``flow`` and ``reason`` (``pause`` or ``failed:<seq>``) say which."""

    def __init__(self, message: str, flow: str | None = None, reason: str = "") -> None:
        super().__init__(message)
        self.flow, self.reason = flow, reason


class TooManyPendingError(MotionError, RuntimeError):
    """An enqueue was refused: the instance holds ``MOTION_MAX_PENDING`` updates while a
    flow of it is paused. Resume it (``handle.resume``) or drop updates, then enqueue."""


class VersionNotKeptError(MotionError, LookupError):
    """A past version was asked for that the instance's history no longer keeps (or
    never had: history off, or a version not yet made); ``kept`` is the range
    ``(oldest, newest)`` it can rebuild, or ``None``."""

    def __init__(self, message: str, kept: tuple[int, int] | None) -> None:
        super().__init__(message)
        self.kept = kept


class NothingRetainedError(MotionError, LookupError):
    """``motion replay`` found no retained updates for an instance (its component has
    no ``retain_updates=``, or no update was applied since it was turned on)."""
