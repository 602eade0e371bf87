"""The worker road: what runs in a Celery worker to apply updates.

The Celery tasks (:mod:`~motion.worker.tasks`), the drain (:mod:`~motion.worker.engine`,
:mod:`~motion.worker.lease`, :mod:`~motion.worker.updates`), recovery
(:mod:`~motion.worker.sweeper`) and the in-process worker
(:mod:`~motion.worker.inprocess`). May use: the definition layer and the floor. Never the
caller road.
"""
