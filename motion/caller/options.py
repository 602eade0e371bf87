"""What a handle is made with: Motion's handle options, checked when they are given.

Owns the keywords a handle accepts beside ``instance_id`` and ``init_state_params``
(Motion's ``logging_level``, ``update_task_type``, ``disable_update_task``,
``redis_socket_timeout``, ``config_path``, ``flush_on_exit``, and the older
``disabled``), what each one does when the handle is made, and the random readable
id of a handle made without one. (The names a flow goes by in ``run``, ``flow``,
Motion's ``flow_key`` and the older ``dataflow_key``, are the handle's:
:func:`motion.caller.handle.flow_name`.) Caller road: uses the floor's errors only.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from motion.floor.errors import ConfigurationError, UnknownOptionError

#: Every handle keyword that some version of Motion or motion knows.
HANDLE_OPTIONS = (
    "logging_level",
    "update_task_type",
    "disable_update_task",
    "disabled",
    "redis_socket_timeout",
    "config_path",
    "flush_on_exit",
)

_TASK_TYPES = ("thread", "process")


@dataclass(frozen=True)
class HandleOptions:
    """The options of one handle, as Motion's ``Component.__call__`` took them.

    ``update_task_type`` is ``"thread"`` or ``"process"`` (Motion ran updates in a
    thread or a process of the caller; here either way a worker applies them).
    ``disable_update_task=True`` makes the handle refuse to enqueue updates except
    ``run(..., flush_update=True)``; ``flush_on_exit`` cannot go with it.
    ``logging_level``, when given, sets the level of the ``"motion"`` logger.
    """

    logging_level: str | int | None = None
    update_task_type: str = "thread"
    disable_update_task: bool = False
    redis_socket_timeout: float | None = None  # None: MOTION_REDIS_SOCKET_TIMEOUT
    config_path: str = ".motionrc.yml"
    flush_on_exit: bool = False

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> HandleOptions:
        """Check ``options`` and apply ``logging_level``.

        Raises:
            UnknownOptionError: a keyword no version of Motion or motion knows
                (a ``TypeError``; the message lists the valid ones).
            ConfigurationError: a known option with a wrong value (a ``ValueError``).
        """
        unknown = sorted(set(options) - set(HANDLE_OPTIONS))
        if unknown:
            valid = ", ".join(("instance_id", "init_state_params", *HANDLE_OPTIONS))
            raise UnknownOptionError(
                f"unknown handle option(s) {', '.join(unknown)}; valid keywords: {valid}."
            )
        given = dict(options)
        if "disabled" in given:  # Motion's name for it before disable_update_task
            given["disable_update_task"] = bool(given.pop("disabled")) or bool(
                given.get("disable_update_task", False)
            )
        opts = cls(**given)
        if opts.update_task_type not in _TASK_TYPES:
            raise ConfigurationError(
                f"update_task_type must be 'thread' or 'process', got {opts.update_task_type!r}."
            )
        if opts.disable_update_task and opts.flush_on_exit:
            raise ConfigurationError(
                "flush_on_exit=True needs the handle to apply updates: drop "
                "disable_update_task=True or flush_on_exit=True."
            )
        if opts.logging_level is not None:
            level = opts.logging_level
            if isinstance(level, str) and not isinstance(logging.getLevelName(level), int):
                raise ConfigurationError(
                    f"logging_level {level!r} is not a logging level; use DEBUG, INFO, "
                    "WARNING, ERROR or CRITICAL."
                )
            logging.getLogger("motion").setLevel(level)
        return opts


# fmt: off
_WORDS = (
    "amber", "azure", "brisk", "calm", "cedar", "coral", "dusky", "eager", "fern", "gentle",
    "hazel", "ivory", "jade", "keen", "lunar", "maple", "mellow", "misty", "noble", "ochre",
    "olive", "pearl", "quiet", "rapid", "rustic", "sage", "silver", "sunny", "swift", "tidal",
)
# fmt: on


def random_id() -> str:
    """A random readable instance id, e.g. ``"misty-cedar-4f1a9c"``."""
    return f"{secrets.choice(_WORDS)}-{secrets.choice(_WORDS)}-{secrets.token_hex(3)}"
