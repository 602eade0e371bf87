"""Client-side caching of state versions with server-assisted invalidation (opt-in).

With ``MOTION_CLIENT_TRACKING=1``, a serve on an unchanged instance costs no round
trip at all. Version checks go through connections with Redis's
``CLIENT TRACKING ON REDIRECT <id>``: the server remembers which meta keys this
process read and, when one changes (a commit, an enqueue), sends an invalidation
to this process's listener connection. A local copy checked since its last
invalidation is trusted without asking Redis.

What it costs: a committed update is seen after its invalidation message arrives
(a loopback or LAN hop after the commit) instead of on the next round trip. If
the listener connection drops, or Redis does not answer its PING within
:data:`CHECK_SECONDS` (hung, partitioned), every copy is distrusted until it is back.

Caller road; uses the floor (connection, keys).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

import redis
from redis.connection import Connection, parse_url

from motion.floor import keys as K

log = logging.getLogger("motion.tracking")
_CHANNEL = b"__redis__:invalidate"
#: a listener that heard nothing for this long sends a PING; with no reply after as
#: long again, it distrusts every copy and reconnects
CHECK_SECONDS = 10.0


class Tracker:
    """This process's invalidation listener and the set of trusted local copies."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._lock = threading.Lock()
        self._trusted: dict[str, int] = {}  # name -> epoch it was confirmed in
        self._changes: dict[str, int] = {}  # name -> invalidations seen (for races)
        self._epoch = 0
        self._listener_id: int | None = None
        self._ready = threading.Event()
        self._client: redis.Redis | None = None
        self._closed = threading.Event()
        self._conn: Any = None
        threading.Thread(target=self._listen, name="motion-tracking", daemon=True).start()
        self._ready.wait(5)

    # -- the serve path -----------------------------------------------------------
    def trusted(self, name: str) -> bool:
        """Whether the local copy of ``name`` is current without asking Redis."""
        return self._listener_id is not None and self._trusted.get(name) == self._epoch

    def begin(self, name: str) -> tuple[int, int]:
        """Call before a version check; pass the result to :meth:`confirm`."""
        return self._epoch, self._changes.get(name, 0)

    def confirm(self, name: str, token: tuple[int, int]) -> None:
        """Trust ``name``'s copy unless it was invalidated since :meth:`begin`."""
        with self._lock:
            if token == (self._epoch, self._changes.get(name, 0)):
                if len(self._trusted) > 100_000:  # keep memory bounded
                    self._trusted.clear()
                self._trusted[name] = self._epoch

    @property
    def listener_id(self) -> int | None:
        """The Redis client id of the invalidation listener (``None`` while down)."""
        return self._listener_id

    def client(self) -> redis.Redis | None:
        """The client whose reads are tracked (``None`` while the listener is down)."""
        return self._client if self._listener_id is not None else None

    # -- the listener ---------------------------------------------------------------
    def _invalidate(self, keys: list[bytes] | None) -> None:
        with self._lock:
            if keys is None:  # FLUSHALL, or too many keys tracked: distrust everything
                self._epoch += 1
                return
            for raw in keys:
                key = raw.decode(errors="replace")
                if key.endswith("}:meta"):
                    name = K.name_from_meta_key(key)
                    self._trusted.pop(name, None)
                    self._changes[name] = self._changes.get(name, 0) + 1
            if len(self._changes) > 100_000:  # keep memory bounded
                self._changes.clear()
                self._epoch += 1

    def _listen(self) -> None:
        delay = 0.1
        while True:
            conn: Any = None
            try:
                options = parse_url(self._url)  # type: ignore[no-untyped-call]  # untyped in redis-py
                base = options.pop("connection_class", Connection)
                # RESP2: invalidations arrive as plain pub/sub messages on this connection
                conn = base(**options, socket_keepalive=True, protocol=2)
                conn.connect()
                self._conn = conn
                conn.send_command("CLIENT", "ID")
                listener_id = int(conn.read_response())
                conn.send_command("SUBSCRIBE", _CHANNEL)
                conn.read_response()
                self._connect_data_client(base, options, listener_id)
                delay = 0.1
                self._ready.set()
                pinged = False
                while True:
                    if not conn.can_read(timeout=CHECK_SECONDS):
                        # quiet: is Redis still there? (a hung Redis or a partition
                        # would leave every copy trusted)
                        if pinged:
                            raise redis.TimeoutError(f"no reply to PING in {CHECK_SECONDS}s")
                        conn.send_command("PING")
                        pinged = True
                        continue
                    message = conn.read_response(timeout=None)
                    pinged = False
                    if isinstance(message, list) and len(message) == 3 and message[1] == _CHANNEL:
                        self._invalidate(message[2])
            except Exception as exc:  # connection lost: distrust everything, reconnect
                with self._lock:
                    self._listener_id = None
                    self._epoch += 1
                if self._closed.is_set():
                    return
                log.warning("client tracking listener lost (%s); reconnecting", exc)
                self._ready.set()
                if conn is not None:
                    conn.disconnect()
                time.sleep(delay)  # back off before reconnecting
                delay = min(delay * 2, 5.0)

    def close(self) -> None:
        """Stop listening; every copy is distrusted from now on."""
        self._closed.set()
        with self._lock:
            self._listener_id = None
            self._epoch += 1
        if self._conn is not None:
            self._conn.disconnect()
        if self._client is not None:
            self._client.close()

    def _connect_data_client(self, base: type, options: dict[str, Any], listener_id: int) -> None:
        class TrackedConnection(base):  # type: ignore[misc]  # a runtime-chosen base class
            def on_connect_check_health(self, check_health: bool = True) -> None:
                super().on_connect_check_health(check_health)
                self.send_command("CLIENT", "TRACKING", "ON", "REDIRECT", listener_id)
                self.read_response()

        from motion.floor.connection import pool_options  # the floor's timeouts and retry budget

        old = self._client
        settings = {**pool_options(), **options}  # options in the URL win
        pool = redis.ConnectionPool(connection_class=TrackedConnection, **settings)
        with self._lock:
            self._client = redis.Redis(connection_pool=pool)
            self._listener_id = listener_id
            self._epoch += 1
        if old is not None:
            old.close()


_tracker: Tracker | None = None
_tracker_pid = 0
_lock = threading.Lock()


def reset() -> None:
    """Forget the tracker (after the Redis URL changed; in tests)."""
    global _tracker
    with _lock:
        if _tracker is not None:
            _tracker.close()
        _tracker = None


def get_tracker(url: str) -> Tracker:
    """The process's tracker (one per process; a forked child starts its own)."""
    global _tracker, _tracker_pid
    if _tracker is None or _tracker_pid != os.getpid():
        with _lock:
            if _tracker is None or _tracker_pid != os.getpid():
                _tracker, _tracker_pid = Tracker(url), os.getpid()
    return _tracker
