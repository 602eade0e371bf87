"""Profiles for ``--profile DIR``: cProfile of the caller, py-spy of the workers."""
