"""Redis Cluster hash slots: the slot of a key, and a short hash tag for every slot.

A cluster-wide index (the pending index, per-component counters...) is touched by the
scripts of every instance, so on a cluster it is split into one part per hash slot:
the part an instance's scripts touch lives in that instance's slot. A part is named
with a hash tag that hashes to the slot; :func:`tag` gives one for each of the 16,384
slots, from a table generated once (``data/slot_tags.txt``, written by
:func:`generate`: the first hexadecimal number, counting up from 0, whose CRC16 falls
in each slot) and read on first use, so a single Redis never loads it.

Floor; imports nothing of motion.
"""

from __future__ import annotations

import binascii
from functools import cache
from importlib import resources

#: hash slots of a Redis Cluster
SLOTS = 16384


def key_slot(key: str | bytes) -> int:
    """The hash slot of ``key``, as Redis Cluster computes it (CRC16 of its hash tag:
    the text between the first ``{`` and the next ``}``, if not empty; else the key)."""
    raw = key.encode() if isinstance(key, str) else key
    start = raw.find(b"{")
    if start >= 0:
        end = raw.find(b"}", start + 1)
        if end > start + 1:
            raw = raw[start + 1 : end]
    return binascii.crc_hqx(raw, 0) % SLOTS


@cache
def _tags() -> tuple[str, ...]:
    text = resources.files("motion.floor").joinpath("data", "slot_tags.txt").read_text()
    tags = tuple(text.split())
    if len(tags) != SLOTS:  # a damaged install: better to stop than to misroute
        raise RuntimeError(f"motion/floor/data/slot_tags.txt holds {len(tags)} tags, not {SLOTS}")
    return tags


def tag(slot: int) -> str:
    """A short string that hashes to ``slot`` (used as ``{tag}`` in a key)."""
    return _tags()[slot]


def all_tags() -> tuple[str, ...]:
    """One tag per slot, in slot order."""
    return _tags()


def generate() -> str:
    """The text of ``data/slot_tags.txt``: for each slot, in order, the first
    hexadecimal number (from 0) whose CRC16 falls in it."""
    found: list[str | None] = [None] * SLOTS
    left, i = SLOTS, 0
    while left:
        text = format(i, "x")
        slot = binascii.crc_hqx(text.encode(), 0) % SLOTS
        if found[slot] is None:
            found[slot] = text
            left -= 1
        i += 1
    return "\n".join(t for t in found if t is not None) + "\n"
