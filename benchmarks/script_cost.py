"""The Redis server time of the drain's own scripts, one by one (separate command).

``python -m benchmarks.script_cost [OTHER_CHECKOUT]`` starts a private redis-server
(no AOF), loads ``begin`` and ``commit`` as this checkout's ``motion/floor/lua`` builds
them (lib.lua and history.lua put before them, as ``motion/floor/scripts.py`` does) and,
given another checkout's root, that one's too, then runs each on a fixed instance (one
``begin`` of a 4-update window; one ``commit`` of those 4 updates with history and
per-minute counters), restoring the keys between calls, and prints ``usec_per_call``
(``INFO commandstats``: the script and the commands it ran) of each, the minimum of
four runs of 1,500 taking turns. On a shared machine compare within one run only.
"""

from __future__ import annotations

import ast
import sys
import time
from pathlib import Path
from typing import Any

import redis

from benchmarks.harness import scratch_server

ROOT = Path(__file__).resolve().parent.parent
KEYS = [
    *("meta", "state", "inbox", "lease", "failed", "stats", "pending", "sweep", "cache"),
    *("held", "parked", "timers", "due", "history", "r1", "r2", "r3", "r4", "r5"),
    *("minutes", "dead", "nudge", "woke"),
]
BEGIN_KEYS = ["meta", "lease", "stats", "inbox", "state", "pending", "sweep", "parked", "nudge"]
TOKEN = "inc:1:nonce"
META = {"inc": "inc", "holder": TOKEN, "applied": 0, "seq": 4, "tag": "1.inc.n", "version": 1}
META |= {"pending:hit": 4, "fence": 1, "applied_at": 1, "last:hit": 4, "created": 1}
HISTORY = ['{"seqs":[[1,4]],"flows":["hit"],"changed":["count"]}', 1, "count", 0]
COMMIT_ARGS: list[Any] = [TOKEN, 1, 4, 30000, 0, 0, 1, 1, 64, "i", "nonce", 0, 1, "count", "5"]
COMMIT_ARGS += [2, "applied:hit", 4, "calls:hit", 4, 1, "pending:hit", -4, 0, 0, 0, 0, 0]
COMMIT_ARGS += [20, 0, 1, *HISTORY]
BEGIN_ARGS = [30000, 64, "1.inc.n", "i", "nonce", 0]


def _libraries(root: Path) -> dict[str, tuple[str, ...]]:
    """``LIBRARIES`` of checkout ``root``'s motion/floor/scripts.py (the files put before
    a script after lib.lua); a checkout older than it put history.lua before commit."""
    tree = ast.parse((root / "motion" / "floor" / "scripts.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LIBRARIES" for t in node.targets
        ):
            return dict(ast.literal_eval(node.value))
    return {"commit": ("history.lua",)}


def source(root: Path, name: str) -> str:
    """Script ``name`` of checkout ``root`` as motion/floor/scripts.py builds it."""
    lua = root / "motion" / "floor" / "lua"
    own = (lua / f"{name}.lua").read_text()
    shebang = ""
    if own.startswith("#!"):
        first, own = own.split("\n", 1)
        shebang = first + "\n"
    libs = ["lib.lua", *_libraries(root).get(name, ())]
    return shebang + "".join((lua / lib).read_text() for lib in libs) + own


def _restore(client: redis.Redis, holder: bool) -> None:
    pipe = client.pipeline(transaction=False)
    pipe.delete("meta", "lease")
    pipe.hset("meta", mapping=META)
    if holder:
        pipe.set("lease", TOKEN)
    else:
        pipe.hdel("meta", "holder")
    for seq in range(1, 5):
        pipe.hset("inbox", seq, b"hit\x02%d\x03payloadpayloadpayload" % int(time.time() * 1000))
    pipe.execute()


def _per_call(client: redis.Redis, sha: str, name: str, n: int = 1500) -> float:
    keys, args = (KEYS, COMMIT_ARGS) if name == "commit" else (BEGIN_KEYS, BEGIN_ARGS)
    client.config_resetstat()
    for _ in range(n):
        _restore(client, holder=name == "commit")
        client.evalsha(sha, len(keys), *keys, *args)
    return float(client.info("commandstats")["cmdstat_evalsha"]["usec_per_call"])


def main(argv: list[str]) -> None:
    """Print each script's server time per call, for this checkout and ``argv[0]``'s."""
    roots = {"this": ROOT, **({"other": Path(argv[0]).resolve()} if argv else {})}
    with scratch_server("script-cost-") as server:
        client = server.client()
        names = ("begin", "commit")
        shas = {(k, n): client.script_load(source(r, n)) for k, r in roots.items() for n in names}
        runs: dict[tuple[str, str], list[float]] = {}
        for _ in range(4):
            for key, sha in shas.items():
                runs.setdefault(key, []).append(_per_call(client, sha, key[1]))
        for (which, name), values in sorted(runs.items()):
            print(f"{which:5s} {name:6s} {min(values):7.1f} us per call (runs: {values})")


if __name__ == "__main__":
    main(sys.argv[1:])
