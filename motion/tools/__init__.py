"""The tools on top: CLI, HTTP, dashboard, metrics, producer, admin, testing.

They only call the library: they may use either road, the definition layer and the
floor; nothing in the library imports a tool.
"""
