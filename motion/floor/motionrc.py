"""Motion's configuration file, ``.motionrc.yml``, loaded into the environment.

Owns Motion's rule for the file and nothing else: the file (``config_path=``,
default ``.motionrc.yml`` in the working directory) is read once per process, at
the first handle (or the first use of a utility or the CLI); each of its keys
(``MOTION_REDIS_HOST``, ``MOTION_REDIS_PORT``, ``MOTION_ENV``, ...) becomes an
environment variable, overwriting one already set. ``MOTION_YAML_LOADED=1`` marks
the process (and, through the environment, its children) as done, as in Motion.

Floor module: imports only :mod:`motion.errors`; :mod:`motion.floor.settings` calls it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

from motion.floor.errors import ConfigurationError

DEFAULT_PATH = ".motionrc.yml"
LOADED_FLAG = "MOTION_YAML_LOADED"

_lock = threading.Lock()
#: the file this process loaded, if any (for ``motion status`` and messages)
loaded_from: Path | None = None


def import_config(config_path: str | os.PathLike[str] = DEFAULT_PATH) -> bool:
    """Load ``config_path`` into ``os.environ`` unless this process already did.

    Motion's function: a missing file is no error (the environment stays as it
    is); a file that is not a YAML mapping raises :class:`ConfigurationError`.

    Returns:
        True if this call loaded a file (the environment may have changed).

    Example::

        from motion.utils import import_config
        import_config("deploy/.motionrc.yml")
    """
    global loaded_from
    if os.environ.get(LOADED_FLAG) is not None:
        return False
    with _lock:
        if os.environ.get(LOADED_FLAG) is not None:
            return False
        path = Path(config_path)
        values = _read(path) if path.is_file() else None
        for key, value in (values or {}).items():
            os.environ[str(key)] = _as_env(value)
        os.environ[LOADED_FLAG] = "1"
        if values is None:
            return False
        loaded_from = path.resolve()
        return True


def _read(path: Path) -> dict[str, Any]:
    import yaml  # a dependency of motion; imported here to keep `import motion` light

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(
            f"{path}: cannot read it as YAML ({exc}); it should hold lines such as "
            f"'MOTION_REDIS_HOST: localhost' (`motion init` writes one)."
        ) from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(
            f"{path}: expected a mapping of variable names to values (e.g. "
            f"'MOTION_REDIS_PORT: 6379'), got {type(data).__name__}."
        )
    return data


def _as_env(value: Any) -> str:
    """The environment form of a YAML value, as Motion wrote it (``str(value)``)."""
    return str(value)


def reset() -> None:
    """Forget that the file was loaded (tests)."""
    global loaded_from
    with _lock:
        os.environ.pop(LOADED_FLAG, None)
        loaded_from = None
