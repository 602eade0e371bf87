"""Worker entry point: ``celery -A workers worker -I my_components``.

``-I`` (``--include``) imports the modules that define your components; the
worker then applies their updates. Any pool works (prefork, threads, solo).
Set ``MOTION_REDIS_URL`` (or Motion's ``MOTION_REDIS_*`` variables) so the worker
uses the same Redis as the callers; Celery's broker defaults to it too.
"""

from motion.floor.celery_app import get_app
from motion.worker.tasks import register

app = register(get_app())

__all__ = ["app"]
