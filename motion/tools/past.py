"""``motion history``: an instance's kept versions, as a table or JSON.

The records come from :func:`motion.floor.history.read_history`; values are decoded
with the component's serializer when its code is loaded here, else cloudpickle.
Tool; uses the definition layer (component), the floor (connection, errors, history,
keys, serde).
"""

from __future__ import annotations

import json
from typing import Any

from motion.define.component import lookup, registered
from motion.floor import history as H
from motion.floor import keys as K
from motion.floor.connection import get_redis, translate_errors
from motion.floor.errors import CommandLineError, InstanceNotFoundError
from motion.floor.serde import DEFAULT_SERIALIZER
from motion.tools.admin import decode_stored


def instance_history(name: str, limit: int | None = None) -> list[H.HistoryRecord]:
    """The kept versions of instance ``name`` (``Comp__id``), newest first.

    Raises:
        InstanceNotFoundError: no such instance.
    """
    component, _ = K.split_instance_name(name)
    if limit is not None and limit < 1:
        raise CommandLineError(f"--limit must be at least 1, got {limit}.")
    serializer = lookup(component).serializer if component in registered() else DEFAULT_SERIALIZER
    with translate_errors(f"reading the history of {name}", name):
        client = get_redis(name)
        if not client.exists(K.InstanceKeys.of(name).meta):
            raise InstanceNotFoundError(
                f"{name} does not exist; `motion list {component}` lists its instances."
            )
        return H.read_history(client, name, limit, serializer)


def state_as_of(name: str, version: int) -> dict[str, Any]:
    """The stored state of instance ``name`` as of kept ``version``, decoded as
    ``motion inspect`` decodes the current one (no component code needed).

    Raises:
        VersionNotKeptError: the history does not keep ``version`` (the message says
            which versions it keeps).
    """
    with translate_errors(f"reading version {version} of {name}", name):
        incarnation, flat = H.state_at(get_redis(name), name, version)
    return decode_stored(name, incarnation, dict(zip(flat[::2], flat[1::2], strict=True)))


def print_history(name: str, limit: int | None, as_json: bool, values: bool) -> None:
    """Print :func:`instance_history` (``values``: with the decoded values, in JSON)."""
    records = instance_history(name, limit)
    if as_json:
        rows: list[dict[str, Any]] = []
        for record in records:
            row = record.as_dict()
            if values:
                row["values"] = record.values()
            rows.append(row)
        print(json.dumps(rows, indent=2, default=repr))
        return
    if not records:
        print(f"{name}: no history kept (history=0, or no update applied yet)")
        return
    for record in records:
        seqs = record.seqs
        span = str(seqs[0]) if len(seqs) == 1 else f"{seqs[0]}-{seqs[-1]}"
        print(
            f"v{record.version}  {record.at:%Y-%m-%d %H:%M:%S} UTC  flows "
            f"{','.join(record.flows)}  seqs {span}  changed {', '.join(record.changed)}"
        )
