"""The core: one event loop that owns all of actorlib's state.

Nothing in here imports a concrete backend or the API layer; it speaks to backends only
through :mod:`actorlib.backends.base`.
"""
