"""The floor both roads stand on: what is in Redis and how to reach it.

Key names (:mod:`~motion.floor.keys`), the Lua scripts (:mod:`~motion.floor.scripts`,
``lua/``), the formats of state, updates, serve results, wake-ups and worker presence
(:mod:`~motion.floor.store`, :mod:`~motion.floor.inbox`, :mod:`~motion.floor.cache`,
:mod:`~motion.floor.wakeup`, :mod:`~motion.floor.heartbeat`), serialization, the values
ops see (:mod:`~motion.floor.props`), Redis and Celery connections, settings and the
error tree. May use: the standard library, redis, Celery (in ``celery_app`` only). Knows
no component definition: it speaks to one through :class:`motion.floor.store.Definition`.
"""
