"""Helpers for testing code that uses motion.

:func:`local_motion` gives a test its own throwaway Redis-protocol server (the
embedded binary, on a free loopback port, data in a temporary folder) and an
in-process worker, so a component's serve and update ops run exactly as in
production, ordering and all, with no set-up::

    from motion.testing import local_motion

    def test_summary_updates():
        with local_motion():
            shopper = Assistant("u1")
            shopper.run("ask", {"question": "shoes?"}, flush_update=True)
            assert "shoes" in shopper.read_state("summary")

Ops are plain functions too (the decorators return them unchanged), so an op's
logic can be unit-tested by calling it with a :class:`motion.State` and
:class:`motion.Properties`.

Tool; uses the caller road (host, tracking), the worker road (inprocess), the floor
(celery_app, connection, directory, embedded, settings, store, wakeup).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from motion.caller import host, tracking
from motion.floor import celery_app, connection, directory, settings, store, wakeup
from motion.floor.embedded import find_binary, free_port, start_server


def forget_process_state() -> None:
    """Forget every cached setting, client, Celery app and local copy of this process,
    so the next use of motion re-reads the environment."""
    settings.reset()
    connection.reset()
    celery_app.reset()
    host.reset()
    store.STATE_CACHE.clear()
    tracking.reset()
    wakeup.reset()
    directory.forget_kept()


@contextlib.contextmanager
def local_motion(worker: bool = True) -> Iterator[str]:
    """Run motion on a private server (and in-process worker) for the ``with`` block.

    Yields the server's URL. Everything is stopped and deleted afterwards, and the
    previous configuration is restored.
    """
    from motion.worker.inprocess import start_inprocess_worker, stop_inprocess_worker

    folder = Path(tempfile.mkdtemp(prefix="motion-test-"))
    port = free_port()
    proc = start_server(find_binary(), port, folder)
    url = f"redis://127.0.0.1:{port}/0"
    previous = settings.get_settings()
    try:
        forget_process_state()
        settings.configure(redis_url=url, broker_url=None, inprocess_worker=worker)
        if worker:
            start_inprocess_worker()
        yield url
    finally:
        stop_inprocess_worker()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)
        forget_process_state()
        settings.configure(**{f: getattr(previous, f) for f in previous.__dataclass_fields__})
