"""The core: one event loop that owns all of actorlib's state.

It imports only itself and :mod:`actorlib.exceptions`. It drives a backend through the
interface in :mod:`actorlib.backends.base`, named in annotations only: a backend is handed
to it, never imported (``tests/test_layers.py`` checks both).
"""
