"""The caller road: what runs in the process that calls ``run``.

The handle (:mod:`~motion.caller.handle`), serve ops and their cache
(:mod:`~motion.caller.serve`), reading and creating instances
(:mod:`~motion.caller.read`), enqueueing and waking a worker
(:mod:`~motion.caller.enqueue`), waiting for updates (:mod:`~motion.caller.wait`).
May use: the definition layer and the floor. Never the worker road: the in-process
worker is handed in by :mod:`motion` (see :func:`motion.caller.enqueue.set_worker_starter`).
"""
