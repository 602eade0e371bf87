"""The caller road: what runs in the process that calls ``run``.

The handle (:mod:`~motion.caller.handle`); reading and creating the state and running
serve ops on it (:mod:`~motion.caller.serve`); enqueueing and waking a worker, and who
reports each failure (:mod:`~motion.caller.enqueue`); waiting for updates
(:mod:`~motion.caller.wait`); hosting the in-process worker (:mod:`~motion.caller.host`).
May use: the definition layer and the floor. Never the worker road: the in-process
worker is handed in by :mod:`motion` (see :func:`motion.caller.host.set_worker`).
"""
