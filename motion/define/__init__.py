"""The definition layer: what a component is (state, flows, ops) and which one applies.

:mod:`~motion.define.component` (``Component`` and its decorators), the registry
(:mod:`~motion.define.definitions`), the graph for ``motion vis``, and Motion's Arrow
state types. May use: the floor. No Redis calls, no Celery.
"""
