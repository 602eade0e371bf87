"""fast_command: one process-wide stack of idle connections per pool, used by the caller's
enqueue and the worker's drain scripts (a real redis-server)."""

from __future__ import annotations

import threading

import pytest
import redis

from motion.floor import lanes
from motion.floor.connection import get_redis
from motion.floor.lanes import fast_command


def _idle(client: redis.Redis) -> list[object]:
    return list(lanes._idle.of(client.connection_pool))


def _ids(client: redis.Redis) -> set[int]:
    """The ids of this process's connections the server lists (CLIENT LIST)."""
    return {int(c["id"]) for c in client.client_list()}


def test_sequential_commands_reuse_one_connection(redis_url: str) -> None:
    client = get_redis()
    for i in range(20):
        assert fast_command(client, "SET", "k", i) == b"OK"
    assert fast_command(client, "GET", "k") == b"19"
    assert len(_idle(client)) == 1


def test_concurrent_threads_never_share_a_connection(redis_url: str) -> None:
    """Eight threads at once: each command has a connection of its own while it runs
    (a shared one would interleave replies: a thread would read another's value)."""
    client = get_redis()
    errors: list[str] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        for i in range(300):
            value = f"{n}:{i}"
            fast_command(client, "SET", f"t{n}", value)
            got = fast_command(client, "GET", f"t{n}")
            if got != value.encode():
                errors.append(f"thread {n} read {got!r}, wrote {value}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    # at most one per thread ran at once, and all came back to the stack
    assert 1 <= len(_idle(client)) <= 8


def test_an_error_reply_keeps_the_connection(redis_url: str) -> None:
    client = get_redis()
    fast_command(client, "SET", "s", "x")
    before = _idle(client)
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        fast_command(client, "LPUSH", "s", "y")
    assert _idle(client) == before
    assert fast_command(client, "GET", "s") == b"x"


def test_a_killed_connection_is_dropped_and_the_command_sent_again(redis_url: str) -> None:
    client = get_redis()
    assert fast_command(client, "INCR", "n") == 1
    (conn,) = _idle(client)
    ours = fast_command(client, "CLIENT", "ID")
    admin = redis.Redis.from_url(redis_url)
    admin.client_kill_filter(_id=ours)
    assert ours not in _ids(admin)
    # the dead socket fails, the command goes again through the client (its own pool)
    assert fast_command(client, "INCR", "n") == 2
    assert admin.get("n") == b"2"
    assert conn not in _idle(client)  # the dead one is not handed out again


def test_a_fork_does_not_inherit_the_parents_connections(redis_url: str) -> None:
    """After a fork the child opens its own (the parent's sockets are not the child's)."""
    import os

    client = get_redis()
    parent_id = fast_command(client, "CLIENT", "ID")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report the id of the connection it used
        try:
            os.write(write, str(fast_command(client, "CLIENT", "ID")).encode())
        finally:
            os._exit(0)
    os.close(write)
    child_id = int(os.read(read, 64) or b"0")
    os.waitpid(pid, 0)
    assert child_id and child_id != parent_id
    assert fast_command(client, "CLIENT", "ID") == parent_id


def test_a_child_forked_while_another_thread_holds_the_lock_does_not_hang(
    redis_url: str,
) -> None:
    """A thread of the parent inside the idle stacks' lock at the fork (a pool seen for
    the first time): the child's own first command still runs."""
    import os
    import signal
    import time

    client = get_redis()
    read, write = os.pipe()
    with lanes._idle.lock:  # (as another thread of the parent would hold it)
        pid = os.fork()
        if pid == 0:  # the child: its first command sees a new pid and takes the lock
            try:
                os.write(write, str(fast_command(client, "PING")).encode())
            finally:
                os._exit(0)
    os.close(write)
    os.set_blocking(read, False)
    deadline, got = time.monotonic() + 10, b""
    while not got and time.monotonic() < deadline:
        try:
            got = os.read(read, 64)
        except BlockingIOError:
            time.sleep(0.05)
    if not got:
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    assert got == b"b'PONG'", "the child hung on the lock its parent held at the fork"


def test_the_fast_lane_sends_each_argument_as_redis_py_would(redis_url: str) -> None:
    """Packed by hiredis directly: str (UTF-8), bytes with NULs, ints and floats reach
    Redis as redis-py's own packer sends them; an argument neither takes is refused
    with redis-py's DataError, and the connection stays usable."""
    client = get_redis()
    values = ["plain", "ü-ñ", b"\x00bin\x01", -5, 1.5, 0.1, 1e20, ""]
    for i, value in enumerate(values):
        fast_command(client, "SET", f"fast:{i}", value)
        client.set(f"slow:{i}", value)
    for i in range(len(values)):
        assert fast_command(client, "GET", f"fast:{i}") == client.get(f"slow:{i}")
    replies = lanes.fast_pipeline(client, [("SET", "piped", "ü"), ("GET", "piped")])
    assert replies == [b"OK", "ü".encode()]
    with pytest.raises(redis.DataError):
        fast_command(client, "SET", "fast:bool", True)
    assert fast_command(client, "GET", "fast:0") == b"plain"
