"""Motion's connection parameters: ``RedisParams`` and the ``MOTION_REDIS_*`` variables.

Owns how Motion's variables (from the environment or ``.motionrc.yml``) describe a
Redis; :mod:`motion.floor.settings` builds the URL in force from them. Floor module:
imports only :mod:`motion.errors`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from motion.floor.errors import ConfigurationError

__all__ = ["RedisParams", "env_bool", "get_redis_params", "motion_configured"]


def env_bool(name: str) -> bool | None:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(f"{name}={raw!r}: use 1 or 0.")


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ConfigurationError(f"{name}={raw!r}: use a whole number.") from None


class _Unset:
    """The default of a :class:`RedisParams` argument that comes from the environment."""


_UNSET = _Unset()


@dataclass(init=False)
class RedisParams:
    """Motion's connection parameters; ``MOTION_REDIS_*`` variables fill the defaults.

    Like Motion's pydantic model it has ``.dict()`` / ``.model_dump()`` and keeps
    extra keywords as attributes (Motion's test set-up passes ``config=``).

    Example::

        RedisParams(host="redis.internal", port=6380, password="s3cret", ssl=True).url()
    """

    host: str
    port: int
    db: int
    password: str | None
    ssl: bool

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        db: int | None = None,
        password: str | _Unset | None = _UNSET,
        ssl: bool | None = None,
        **extra: Any,
    ) -> None:
        env = os.environ
        self.host = host if host is not None else env.get("MOTION_REDIS_HOST", "localhost")
        self.port = int(port) if port is not None else _env_int("MOTION_REDIS_PORT", 6379)
        self.db = int(db) if db is not None else _env_int("MOTION_REDIS_DB", 0)
        if isinstance(password, _Unset):  # Motion: unset, "" or "None" means no password
            password = _password()
        self.password = password
        self.ssl = bool(ssl if ssl is not None else env_bool("MOTION_REDIS_SSL"))
        self._extra = dict(extra)
        for name, value in extra.items():
            setattr(self, name, value)

    def url(self) -> str:
        """The equivalent ``redis://`` or ``rediss://`` URL."""
        scheme = "rediss" if self.ssl else "redis"
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        return f"{scheme}://{auth}{self.host}:{self.port}/{self.db}"

    def model_dump(self) -> dict[str, Any]:
        """The parameters as a dict, as Motion's pydantic model gave them."""
        base = {"host": self.host, "port": self.port, "db": self.db}
        base.update(password=self.password, ssl=self.ssl)
        return {**base, **self._extra}

    def dict(self) -> dict[str, Any]:
        """Pydantic 1's name for :meth:`model_dump` (Motion's code calls ``rp.dict()``)."""
        return self.model_dump()


def get_redis_params() -> RedisParams:
    """Motion's ``get_redis_params()``: :class:`RedisParams` from the environment."""
    return RedisParams()


def _password() -> str | None:
    """``MOTION_REDIS_PASSWORD``; Motion's ``None`` (what a ``null`` in
    ``.motionrc.yml`` becomes) and an empty value mean no password."""
    raw = os.environ.get("MOTION_REDIS_PASSWORD")
    return None if raw in (None, "", "None", "null") else raw


_MOTION_REDIS_VARS = (
    "MOTION_REDIS_HOST",
    "MOTION_REDIS_PORT",
    "MOTION_REDIS_DB",
    "MOTION_REDIS_PASSWORD",
    "MOTION_REDIS_SSL",
)


def motion_configured() -> bool:
    """Whether Motion's ``MOTION_REDIS_*`` variables say where Redis is (and no URL does)."""
    if os.environ.get("MOTION_REDIS_URL", "").strip():
        return False
    return any(os.environ.get(name) for name in _MOTION_REDIS_VARS)
